//! The firmware's own image, through the library's build helper (as any firmware would):
//! the repository's `fs_image/` unless `SMOLHTTPD_FS_IMAGE` names another folder. Also puts
//! `memory.x` where the linker finds it.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-env-changed=SMOLHTTPD_FS_IMAGE");
    println!("cargo:rerun-if-env-changed=SMOLHTTPD_FW_CLOCK_START_MS");
    let dir = std::env::var_os("SMOLHTTPD_FS_IMAGE").unwrap_or_else(|| "../fs_image".into());
    if let Err(e) = smolhttpd_image::Image::new(dir).generate() {
        panic!("smolhttpd image: {e}");
    }
}
