//! The filesystem image: the files of `fs_image/`, baked into the binary by `build.rs`.
//!
//! A sorted static table searched by URL path. It does not decode or normalise paths (that is
//! [`crate::http`]'s job) and never touches a real filesystem.

/// One file of the image.
#[derive(Debug)]
pub struct File {
    /// URL path, starting with `/`.
    pub path: &'static str,
    /// `Content-Type` value.
    pub content_type: &'static str,
    /// Strong ETag, quotes included.
    pub etag: &'static str,
    /// Ready-made header lines (`Content-Type`, `ETag`, `Accept-Ranges`), each ending in CRLF.
    pub headers: &'static str,
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
    /// Its header lines, like [`File::headers`].
    pub headers: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/fs_image.rs"));

/// What a normalised path names in the image.
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    /// A file.
    File(&'static File),
    /// A directory given without its trailing slash: redirect to `path/`.
    Directory,
}

/// Finds the file at `path`, or `index.html` for a path ending in `/`.
pub fn lookup(path: &str) -> Option<Entry> {
    if path.ends_with('/') {
        return find_joined(path, "index.html").map(Entry::File);
    }
    if let Some(f) = find(path) {
        return Some(Entry::File(f));
    }
    if is_directory(path) {
        return Some(Entry::Directory);
    }
    None
}

/// Finds the file at exactly `path`.
pub fn find(path: &str) -> Option<&'static File> {
    FILES
        .binary_search_by(|f| f.path.cmp(path))
        .ok()
        .map(|i| &FILES[i])
}

/// Orders a file's path against the string `dir` + `name`, without building it.
fn cmp_joined(path: &str, dir: &str, name: &str) -> core::cmp::Ordering {
    let (p, d) = (path.as_bytes(), dir.as_bytes());
    let head = &p[..p.len().min(d.len())];
    head.cmp(d)
        .then_with(|| p[head.len()..].cmp(name.as_bytes()))
}

/// Finds `dir` + `name`.
fn find_joined(dir: &str, name: &str) -> Option<&'static File> {
    FILES
        .binary_search_by(|f| cmp_joined(f.path, dir, name))
        .ok()
        .map(|i| &FILES[i])
}

/// True when some file lives below `path/`.
fn is_directory(path: &str) -> bool {
    let i = FILES.partition_point(|f| cmp_joined(f.path, path, "/").is_lt());
    FILES.get(i).is_some_and(|f| {
        let p = f.path.as_bytes();
        p.len() > path.len() && p.starts_with(path.as_bytes()) && p[path.len()] == b'/'
    })
}

/// Number of files in the image.
pub fn file_count() -> usize {
    FILES.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(FILES.windows(2).all(|w| w[0].path < w[1].path));
    }

    #[test]
    fn lookups() {
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
