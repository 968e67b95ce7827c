//! Build script: turns the `fs_image/` folder (or `$SMOLHTTPD_FS_IMAGE`) into a table the core
//! `include!`s from `$OUT_DIR/fs_image.rs`.
//!
//! Each file becomes one `File` row, sorted by URL path for `binary_search_by`, with its content
//! type (from the extension), a strong ETag (CRC-32 and length of the bytes), the ready-made
//! header lines of a full response, and a gzip copy when the type compresses and the copy is
//! smaller. Nothing is formatted per request at run time.

use std::env;
use std::fmt::Write as _;
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

fn main() {
    let root = match env::var_os("SMOLHTTPD_FS_IMAGE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("fs_image"),
    };
    println!("cargo:rerun-if-env-changed=SMOLHTTPD_FS_IMAGE");
    println!("cargo:rerun-if-changed={}", root.display());
    if !root.is_dir() {
        fail(&format!(
            "the image folder {} does not exist (set SMOLHTTPD_FS_IMAGE to a folder)",
            root.display()
        ));
    }

    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let gz_dir = out_dir.join("gz");
    fs::create_dir_all(&gz_dir).unwrap();

    let mut table = String::new();
    let mut total = 0usize;
    let mut max_path = 0usize;
    writeln!(table, "/// Files of the image, sorted by URL path.").unwrap();
    writeln!(table, "pub static FILES: &[File] = &[").unwrap();
    for (i, (url, path)) in files.iter().enumerate() {
        println!("cargo:rerun-if-changed={}", path.display());
        let body = fs::read(path).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
        total += body.len();
        max_path = max_path.max(url.len());
        let content_type = content_type(url);
        let etag = format!("\"{:08x}-{:x}\"", crc32fast::hash(&body), body.len());
        let headers =
            format!("Content-Type: {content_type}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n");
        let gzip = if COMPRESSIBLE.iter().any(|p| content_type.starts_with(p)) {
            let gz = gzip(&body);
            if gz.len() < body.len() {
                let gz_path = gz_dir.join(format!("{i}.gz"));
                fs::write(&gz_path, &gz).unwrap();
                total += gz.len();
                let gz_etag = format!("\"{:08x}-{:x}-gz\"", crc32fast::hash(&gz), gz.len());
                Some((gz_path, gz_etag))
            } else {
                None
            }
        } else {
            None
        };
        writeln!(table, "    File {{").unwrap();
        writeln!(table, "        path: {url:?},").unwrap();
        writeln!(table, "        content_type: {content_type:?},").unwrap();
        writeln!(table, "        etag: {etag:?},").unwrap();
        writeln!(table, "        headers: {headers:?},").unwrap();
        writeln!(
            table,
            "        body: include_bytes!({:?}),",
            path.canonicalize().unwrap()
        )
        .unwrap();
        match gzip {
            Some((p, gz_etag)) => {
                // The gzip copy is another representation: its own strong ETag (RFC 9110 8.8.3).
                let gz_headers = header_block(&content_type, &gz_etag);
                writeln!(table, "        gzip: Some(Gzip {{").unwrap();
                writeln!(table, "            body: include_bytes!({p:?}),").unwrap();
                writeln!(table, "            etag: {gz_etag:?},").unwrap();
                writeln!(table, "            headers: {gz_headers:?},").unwrap();
                writeln!(table, "        }}),").unwrap();
            }
            None => writeln!(table, "        gzip: None,").unwrap(),
        }
        writeln!(table, "    }},").unwrap();
    }
    writeln!(table, "];").unwrap();
    writeln!(table, "/// Length of the longest URL path in the image.").unwrap();
    writeln!(table, "pub const MAX_PATH_LEN: usize = {max_path};").unwrap();
    writeln!(
        table,
        "/// Bytes of file bodies (and gzip copies) in the image."
    )
    .unwrap();
    writeln!(table, "pub const IMAGE_BYTES: usize = {total};").unwrap();

    let mut out = fs::File::create(out_dir.join("fs_image.rs")).unwrap();
    out.write_all(table.as_bytes()).unwrap();
}

/// Collects `(url_path, file_path)` for every regular file below `dir`.
fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path();
        let kind = fs::metadata(&path)
            .unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())))
            .file_type();
        if kind.is_dir() {
            walk(root, &path, files);
        } else if kind.is_file() {
            let rel = path.strip_prefix(root).unwrap();
            let mut url = String::new();
            for part in rel.components() {
                let name = part.as_os_str().to_str().unwrap_or_else(|| {
                    fail(&format!(
                        "{}: the file name is not valid UTF-8, so it cannot be served; rename it",
                        path.display()
                    ))
                });
                if name.contains(['\\', '?', '#', '%']) || name.chars().any(char::is_control) {
                    fail(&format!(
                        "{}: the file name contains a character that cannot be in a URL path \
                         (\\ ? # % or a control character); rename it",
                        path.display()
                    ));
                }
                url.push('/');
                url.push_str(name);
            }
            files.push((url, path));
        }
    }
}

/// The ready-made header lines of a representation.
fn header_block(content_type: &str, etag: &str) -> String {
    format!("Content-Type: {content_type}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n")
}

/// Types mime_guess does not know.
const EXTRA_TYPES: &[(&str, &str)] =
    &[(".msi", "application/x-msi"), (".wasm", "application/wasm")];

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
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn fail(msg: &str) -> ! {
    eprintln!("error: smolhttpd image: {msg}");
    panic!("smolhttpd image: {msg}");
}
