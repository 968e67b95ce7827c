//! The firmware's own image, through the library's build helper (as any firmware would):
//! the repository's `fs_image/` unless `SMOLHTTPD_FS_IMAGE` names another folder. Also puts
//! `memory.x` where the linker finds it.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    // The board's memory map, as memory.x where cortex-m-rt's link.x looks for it.
    let lm3s = std::env::var_os("CARGO_FEATURE_LM3S6965").is_some();
    // (No memory.x in this folder: the linker would find it before this one.)
    let memory = if lm3s {
        "memory-lm3s6965.x"
    } else {
        "memory-mps2-an386.x"
    };
    std::fs::copy(memory, out.join("memory.x")).unwrap();
    println!("cargo:rerun-if-changed={memory}");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-env-changed=SMOLHTTPD_FS_IMAGE");
    println!("cargo:rerun-if-env-changed=SMOLHTTPD_FW_CLOCK_START_MS");
    // defmt's linker script (its crate puts it on the search path) keeps the format strings.
    if std::env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }
    // lm3s6965's 256 KB of flash holds the code and the seed's files without the two videos
    // (2 MB); mps2's 4 MiB holds all of fs_image/.
    let dir = match std::env::var_os("SMOLHTTPD_FS_IMAGE") {
        Some(dir) => PathBuf::from(dir),
        None if lm3s => without_videos(&out),
        None => PathBuf::from("../fs_image"),
    };
    if let Err(e) = smolhttpd_image::Image::new(dir).generate() {
        panic!("smolhttpd image: {e}");
    }
}

/// A copy of `../fs_image` without `video/`, for a board whose flash cannot hold the videos.
fn without_videos(out: &std::path::Path) -> PathBuf {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let (path, name) = (entry.path(), entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                if name != "video" {
                    copy(&path, &to.join(&name));
                }
            } else {
                std::fs::copy(&path, to.join(&name)).unwrap();
            }
        }
    }
    let site = out.join("site");
    let _ = std::fs::remove_dir_all(&site);
    copy(std::path::Path::new("../fs_image"), &site);
    println!("cargo:rerun-if-changed=../fs_image");
    site
}
