//! Build-time helper for smolhttpd: turns a folder into the static file table that
//! `smolhttpd::files::Files` serves, the way lwIP's `makefsdata` does for its httpd.
//!
//! Each file becomes one row, sorted by URL path for binary search, with its content type (from
//! the extension), a strong ETag (CRC-32 and length of the bytes), its modification time (for
//! `Last-Modified`: `SOURCE_DATE_EPOCH` when set, for reproducible builds, else the file's
//! mtime), and a gzip copy when the type compresses and the copy is smaller. Nothing is formatted per request at run time.
//!
//! In `build.rs` of a firmware or host program (`fn main` there):
//!
//! ```no_run
//! smolhttpd_image::Image::new("site") // relative to the crate's own folder
//!     .generate()
//!     .unwrap_or_else(|e| panic!("{e}"));
//! // then, in the program:
//! // mod site { include!(concat!(env!("OUT_DIR"), "/fs_image.rs")); }
//! // let mut files = smolhttpd::files::Files::new(site::FILES);
//! ```
//!
//! The generated file defines `FILES: &[File]`, `MAX_PATH_LEN`, `IMAGE_BYTES` and
//! `MAX_REDIRECT_LINE`, and asserts at compile time that the longest redirect of a folder
//! (`GET /folder` answers 301 with `Location: /folder/`) fits `files::REDIRECT_ROOM`: an image
//! whose redirect could not be answered does not build.

use std::fmt::{self, Write as _};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Types worth a gzip copy; media and archives are already compressed.
const COMPRESSIBLE: &[&str] = &[
    "text/",
    "application/json",
    "application/javascript",
    "image/svg+xml",
    "application/xml",
];

/// Types mime_guess does not know.
const EXTRA_TYPES: &[(&str, &str)] =
    &[(".msi", "application/x-msi"), (".wasm", "application/wasm")];

/// A folder to turn into a file table.
#[derive(Debug, Clone)]
pub struct Image {
    dir: PathBuf,
    type_path: String,
    out_file: Option<PathBuf>,
    gzip: bool,
}

/// What [`Image::generate`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Files in the table.
    pub files: usize,
    /// Bytes of file bodies and gzip copies.
    pub bytes: usize,
    /// Length of the longest URL path.
    pub max_path_len: usize,
    /// Length of the longest `Location: /folder/\r\n` line a folder's redirect writes.
    pub max_redirect_line: usize,
}

/// Why a table could not be generated.
#[derive(Debug)]
pub enum Error {
    /// The folder does not exist or is not a folder.
    NotAFolder(PathBuf),
    /// Reading or writing a path failed.
    Io(PathBuf, std::io::Error),
    /// A file name is not valid UTF-8.
    NotUtf8(PathBuf),
    /// A file name holds a character a URL path cannot carry.
    BadName(PathBuf),
    /// Not in a build script (no `OUT_DIR`) and no [`Image::out_file`] given.
    NoOutDir,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAFolder(p) => write!(
                f,
                "the image folder {} does not exist or is not a folder",
                p.display()
            ),
            Error::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Error::NotUtf8(p) => write!(
                f,
                "{}: the file name is not valid UTF-8, so it cannot be served; rename it",
                p.display()
            ),
            Error::BadName(p) => write!(
                f,
                "{}: the file name contains a character that cannot be in a URL path \
                 (\\ ? # % or a control character); rename it",
                p.display()
            ),
            Error::NoOutDir => f.write_str("OUT_DIR is not set: give Image::out_file a path"),
        }
    }
}

impl std::error::Error for Error {}

impl Image {
    /// The folder `dir`; a relative path is taken from `CARGO_MANIFEST_DIR` when set.
    pub fn new(dir: impl Into<PathBuf>) -> Image {
        let dir = dir.into();
        let dir = match std::env::var_os("CARGO_MANIFEST_DIR") {
            Some(root) if dir.is_relative() => Path::new(&root).join(dir),
            _ => dir,
        };
        Image {
            dir,
            type_path: "::smolhttpd::files".into(),
            out_file: None,
            gzip: true,
        }
    }

    /// The Rust path of the module holding `File`, `Gzip` and `REDIRECT_ROOM` in the generated code (default
    /// `::smolhttpd::files`).
    pub fn type_path(mut self, path: &str) -> Image {
        self.type_path = path.into();
        self
    }

    /// Where to write the table (default `$OUT_DIR/fs_image.rs`).
    pub fn out_file(mut self, path: impl Into<PathBuf>) -> Image {
        self.out_file = Some(path.into());
        self
    }

    /// Whether to store gzip copies (default true).
    pub fn gzip(mut self, on: bool) -> Image {
        self.gzip = on;
        self
    }

    /// Walks the folder and writes the table; in a build script, also tells cargo to run
    /// again when the folder or a file changes.
    pub fn generate(&self) -> Result<Summary, Error> {
        let in_build = std::env::var_os("OUT_DIR");
        let out = match (&self.out_file, &in_build) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => Path::new(d).join("fs_image.rs"),
            (None, None) => return Err(Error::NoOutDir),
        };
        if !self.dir.is_dir() {
            return Err(Error::NotAFolder(self.dir.clone()));
        }
        let mut files = Vec::new();
        walk(&self.dir, &self.dir, &mut files)?;
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let gz_dir = out.with_file_name("fs_image_gz");
        fs::create_dir_all(&gz_dir).map_err(|e| Error::Io(gz_dir.clone(), e))?;
        if in_build.is_some() {
            println!("cargo:rerun-if-changed={}", self.dir.display());
        }

        let p = &self.type_path;
        // Reproducible builds pin every file's time (https://reproducible-builds.org's rule).
        let epoch = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        if in_build.is_some() {
            println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
        }
        let mut sum = Summary {
            files: files.len(),
            bytes: 0,
            max_path_len: 0,
            max_redirect_line: 0,
        };
        let mut t = String::new();
        let _ = writeln!(
            t,
            "/// Files of the image, sorted by URL path (for binary search)."
        );
        let _ = writeln!(t, "pub static FILES: &[{p}::File] = &[");
        for (i, (url, path)) in files.iter().enumerate() {
            if in_build.is_some() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            let body = fs::read(path).map_err(|e| Error::Io(path.clone(), e))?;
            let abs = path
                .canonicalize()
                .map_err(|e| Error::Io(path.clone(), e))?;
            sum.bytes += body.len();
            sum.max_path_len = sum.max_path_len.max(url.len());
            // `GET /folder` answers 301 with `Location: /folder/`.
            let folder = url.rfind('/').unwrap_or(0);
            if folder > 0 {
                let line = "Location: ".len() + folder + "/\r\n".len();
                sum.max_redirect_line = sum.max_redirect_line.max(line);
            }
            let content_type = content_type(url);
            let compress = self.gzip && COMPRESSIBLE.iter().any(|c| content_type.starts_with(c));
            let gzip = match compress.then(|| gzip(&body)) {
                Some(gz) if gz.len() < body.len() => {
                    let gz_path = gz_dir.join(format!("{i}.gz"));
                    fs::write(&gz_path, &gz).map_err(|e| Error::Io(gz_path.clone(), e))?;
                    sum.bytes += gz.len();
                    // Another representation: its own strong ETag (RFC 9110 8.8.3).
                    Some((gz_path, format!("{}-gz\"", etag(&gz).trim_end_matches('"'))))
                }
                _ => None,
            };
            let _ = writeln!(t, "    {p}::File {{");
            let _ = writeln!(t, "        path: {url:?},");
            let _ = writeln!(t, "        content_type: {content_type:?},");
            let _ = writeln!(t, "        etag: {:?},", etag(&body));
            let modified = epoch.unwrap_or_else(|| {
                fs::metadata(path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs())
            });
            let _ = writeln!(t, "        modified: {modified},");
            let _ = writeln!(t, "        body: include_bytes!({abs:?}),");
            match gzip {
                Some((gz, gz_etag)) => {
                    let _ = writeln!(t, "        gzip: Some({p}::Gzip {{");
                    let _ = writeln!(t, "            body: include_bytes!({gz:?}),");
                    let _ = writeln!(t, "            etag: {gz_etag:?},");
                    let _ = writeln!(t, "        }}),");
                }
                None => {
                    let _ = writeln!(t, "        gzip: None,");
                }
            }
            let _ = writeln!(t, "    }},");
        }
        let _ = writeln!(t, "];");
        let _ = writeln!(t, "/// Length of the longest URL path in the image.");
        let _ = writeln!(t, "pub const MAX_PATH_LEN: usize = {};", sum.max_path_len);
        let _ = writeln!(
            t,
            "/// Bytes of file bodies (and gzip copies) in the image."
        );
        let _ = writeln!(t, "pub const IMAGE_BYTES: usize = {};", sum.bytes);
        let _ = writeln!(
            t,
            "/// The longest `Location: /folder/\\r\\n` line a folder's redirect writes."
        );
        let _ = writeln!(
            t,
            "pub const MAX_REDIRECT_LINE: usize = {};",
            sum.max_redirect_line
        );
        // A folder whose redirect cannot be answered fails the build, not a request.
        let _ = writeln!(
            t,
            "const _: () = assert!(MAX_REDIRECT_LINE <= {p}::REDIRECT_ROOM, \
             \"a folder path in the image is too long for its redirect's Location header: shorten it\");"
        );
        fs::write(&out, t).map_err(|e| Error::Io(out.clone(), e))?;
        Ok(sum)
    }
}

/// Collects `(url_path, file_path)` for every regular file below `dir`.
fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::Io(dir.to_path_buf(), e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::Io(dir.to_path_buf(), e))?.path();
        let kind = fs::metadata(&path)
            .map_err(|e| Error::Io(path.clone(), e))?
            .file_type();
        if kind.is_dir() {
            walk(root, &path, files)?;
        } else if kind.is_file() {
            let mut url = String::new();
            for part in path.strip_prefix(root).unwrap_or(&path).components() {
                let name = part
                    .as_os_str()
                    .to_str()
                    .ok_or_else(|| Error::NotUtf8(path.clone()))?;
                if name.contains(['\\', '?', '#', '%']) || name.chars().any(char::is_control) {
                    return Err(Error::BadName(path));
                }
                url.push('/');
                url.push_str(name);
            }
            files.push((url, path));
        }
    }
    Ok(())
}

/// `"<crc32>-<len>"` in lowercase hex, quotes included.
fn etag(body: &[u8]) -> String {
    format!("\"{:08x}-{:x}\"", crc32fast::hash(body), body.len())
}

fn content_type(url: &str) -> String {
    if let Some((_, t)) = EXTRA_TYPES.iter().find(|(ext, _)| url.ends_with(ext)) {
        return t.to_string();
    }
    let mime = mime_guess::from_path(url).first_or_octet_stream();
    let essence = mime.essence_str();
    if essence.starts_with("text/")
        || essence == "application/javascript"
        || essence == "application/json"
    {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_string()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the temp dir, removed on drop.
    struct Temp(PathBuf);
    impl Temp {
        fn new(name: &str) -> Temp {
            let p =
                std::env::temp_dir().join(format!("smolhttpd-image-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Temp(p)
        }
        fn file(&self, rel: &str, bytes: &[u8]) {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        }
    }
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn generate(t: &Temp) -> Result<(Summary, String), Error> {
        let out = t.0.join("out").join("fs_image.rs");
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        let sum = Image::new(t.0.join("site")).out_file(&out).generate()?;
        Ok((sum, fs::read_to_string(out).unwrap()))
    }

    #[test]
    fn table_of_a_folder() {
        let t = Temp::new("table");
        let big = "<p>hello</p>".repeat(200);
        t.file("site/index.html", big.as_bytes());
        t.file("site/a/b.txt", b"hi");
        t.file("site/img/x.png", b"\x89PNG....");
        let (sum, code) = generate(&t).unwrap();
        let at = |s: &str| {
            code.find(s)
                .unwrap_or_else(|| panic!("{s} missing:\n{code}"))
        };
        assert!(
            at("\"/a/b.txt\"") < at("\"/img/x.png\"")
                && at("\"/img/x.png\"") < at("\"/index.html\"")
        );
        assert!(code.contains("content_type: \"text/html; charset=utf-8\""));
        assert!(code.contains("content_type: \"image/png\""));
        assert!(code.contains(&format!("{:?}", etag(b"hi"))));
        // One gzip copy: the big page; not the tiny text, not the png.
        assert_eq!(
            code.matches("gzip: Some(::smolhttpd::files::Gzip").count(),
            1
        );
        assert_eq!(code.matches("gzip: None").count(), 2);
        assert!(code.contains("-gz\\\""));
        assert_eq!(sum.files, 3);
        let mtime = fs::metadata(t.0.join("site/a/b.txt"))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(code.contains(&format!("modified: {mtime},")), "{code}");
        assert_eq!(sum.max_path_len, "/index.html".len());
        assert!(sum.bytes > big.len() + 2 + 8);
        assert!(code.contains(&format!("IMAGE_BYTES: usize = {};", sum.bytes)));
        // The longest folder is /img: `Location: /img/\r\n`, checked against the library's room.
        assert_eq!(sum.max_redirect_line, "Location: /img/\r\n".len());
        assert!(code.contains("MAX_REDIRECT_LINE: usize = 17;"), "{code}");
        assert!(code.contains("assert!(MAX_REDIRECT_LINE <= ::smolhttpd::files::REDIRECT_ROOM"));
    }

    #[test]
    fn bad_names_and_folders() {
        let t = Temp::new("bad");
        t.file("site/a?b.txt", b"x");
        let e = generate(&t).unwrap_err().to_string();
        assert!(e.contains("a?b.txt") && e.contains("rename it"), "{e}");
        let e = Image::new(t.0.join("nope"))
            .out_file(t.0.join("x.rs"))
            .generate();
        assert!(matches!(e, Err(Error::NotAFolder(_))));
    }

    #[test]
    fn empty_folder() {
        let t = Temp::new("empty");
        fs::create_dir_all(t.0.join("site")).unwrap();
        let (sum, code) = generate(&t).unwrap();
        assert_eq!(sum.files, 0);
        assert!(code.contains("= &[\n];") && code.contains("MAX_PATH_LEN: usize = 0;"));
        assert!(code.contains("MAX_REDIRECT_LINE: usize = 0;"));
    }
}
