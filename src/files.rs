//! Files: a handler over a static table of files, the kind the `smolhttpd-image` build helper
//! generates from a folder (the built-in [`crate::site`] is one).
//!
//! A sorted table searched by URL path; `index.html` answers for a directory, a directory named
//! without its slash is a 301, a missing file is 404 with the table's own `/404.html` when it
//! has one. The handler picks the gzip copy for clients that take it and names the ETag; the
//! server does the rest (HEAD, ranges, 304). It never touches a real filesystem.

use crate::handler::{Body, Context, Error, Handler, Reply, Request, Status, HTML};

/// One file of an image.
#[derive(Debug)]
pub struct File {
    /// URL path, starting with `/`.
    pub path: &'static str,
    /// `Content-Type` value.
    pub content_type: &'static str,
    /// Strong ETag, quotes included.
    pub etag: &'static str,
    /// Last modification, seconds since 1970 (0: unknown), for `Last-Modified`.
    pub modified: u64,
    /// The bytes.
    pub body: &'static [u8],
    /// A gzip copy of `body`, when the type compresses and the copy is smaller.
    pub gzip: Option<Gzip>,
}

/// The gzip representation of a file.
#[derive(Debug)]
pub struct Gzip {
    /// The compressed bytes.
    pub body: &'static [u8],
    /// Its own strong ETag, quotes included.
    pub etag: &'static str,
}

/// What a normalised path names in a table.
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    /// A file.
    File(&'static File),
    /// A directory given without its trailing slash: redirect to `path/`.
    Directory,
}

/// The handler serving a file table. Route it as the last, catch-all route:
/// `Route::prefix(Methods::GET | Methods::HEAD, "/", &mut files)`.
#[derive(Debug, Clone, Copy)]
pub struct Files {
    files: &'static [File],
}

impl Files {
    /// Serves `files`, which must be sorted by path (as the build helper writes them).
    pub const fn new(files: &'static [File]) -> Files {
        Files { files }
    }

    /// The table.
    pub const fn files(&self) -> &'static [File] {
        self.files
    }

    /// Finds the file at `path`, or `index.html` for a path ending in `/`.
    pub fn lookup(&self, path: &str) -> Option<Entry> {
        if path.ends_with('/') {
            return self.find_joined(path, "index.html").map(Entry::File);
        }
        if let Some(f) = self.find(path) {
            return Some(Entry::File(f));
        }
        if self.is_directory(path) {
            return Some(Entry::Directory);
        }
        None
    }

    /// Finds the file at exactly `path`.
    pub fn find(&self, path: &str) -> Option<&'static File> {
        self.find_joined(path, "")
    }

    /// Finds `dir` + `name`, without building the string.
    fn find_joined(&self, dir: &str, name: &str) -> Option<&'static File> {
        let files = self.files;
        files
            .binary_search_by(|f| cmp_joined(f.path, dir, name))
            .ok()
            .map(|i| &files[i])
    }

    /// True when some file lives below `path/`.
    fn is_directory(&self, path: &str) -> bool {
        let i = self
            .files
            .partition_point(|f| cmp_joined(f.path, path, "/").is_lt());
        self.files.get(i).is_some_and(|f| {
            let p = f.path.as_bytes();
            p.len() > path.len() && p.starts_with(path.as_bytes()) && p[path.len()] == b'/'
        })
    }

    /// 404, with the table's `/404.html` as the body when there is one.
    pub fn not_found(&self) -> Reply {
        match self.find("/404.html") {
            Some(f) => Reply::new(Status::NotFound, HTML, Body::Static(f.body)),
            None => Reply::error(Status::NotFound),
        }
    }
}

/// Room for a folder redirect's `Location: /folder/\r\n` line: the reply's formatted headers
/// ([`crate::handler::REPLY_HEADERS`]). The generated image asserts at compile time that its
/// longest folder fits.
pub const REDIRECT_ROOM: usize = crate::handler::REPLY_HEADERS;

impl Handler for Files {
    fn handle(&mut self, req: &Request<'_>, _: &Context<'_>) -> Result<Reply, Error> {
        Ok(match self.lookup(req.path) {
            None => self.not_found(),
            // The path as the table spells it, so the Location is the file's own prefix.
            Some(Entry::Directory) => Reply::new(Status::MovedPermanently, "", Body::Static(&[]))
                .header("Location", format_args!("{}/", req.path)),
            Some(Entry::File(file)) => {
                let reply = match &file.gzip {
                    Some(gz) if req.accept_gzip => {
                        Reply::new(Status::Ok, file.content_type, Body::Static(gz.body))
                            .with_etag(gz.etag)
                            .with_headers("Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n")
                    }
                    Some(_) => Reply::new(Status::Ok, file.content_type, Body::Static(file.body))
                        .with_etag(file.etag)
                        .with_headers("Vary: Accept-Encoding\r\n"),
                    None => Reply::new(Status::Ok, file.content_type, Body::Static(file.body))
                        .with_etag(file.etag),
                };
                match file.modified {
                    0 => reply,
                    t => reply.with_last_modified(t),
                }
            }
        })
    }
}

/// Orders a file's path against the string `dir` + `name`, without building it.
fn cmp_joined(path: &str, dir: &str, name: &str) -> core::cmp::Ordering {
    let (p, d) = (path.as_bytes(), dir.as_bytes());
    let head = &p[..p.len().min(d.len())];
    head.cmp(d)
        .then_with(|| p[head.len()..].cmp(name.as_bytes()))
}

#[cfg(all(test, feature = "site"))]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(crate::site::FILES.windows(2).all(|w| w[0].path < w[1].path));
    }

    #[test]
    fn lookups() {
        let files = Files::new(crate::site::FILES);
        let lookup = |p| files.lookup(p);
        assert!(matches!(lookup("/"), Some(Entry::File(f)) if f.path == "/index.html"));
        assert!(matches!(lookup("/img"), Some(Entry::Directory)));
        assert!(
            matches!(lookup("/img/car.jpeg"), Some(Entry::File(f)) if f.path == "/img/car.jpeg")
        );
        assert!(lookup("/img/").is_none());
        assert!(lookup("/im").is_none());
        assert!(lookup("/nope").is_none());
    }
}
