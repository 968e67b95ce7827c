//! Build script: the built-in image (`smolhttpd::site`) from `fs_image/`, or from the folder in
//! `$SMOLHTTPD_FS_IMAGE`, through the same `smolhttpd-image` helper a dependent crate's own
//! build script uses.

fn main() {
    println!("cargo:rerun-if-env-changed=SMOLHTTPD_FS_IMAGE");
    if std::env::var_os("CARGO_FEATURE_SITE").is_none() {
        return;
    }
    let dir = std::env::var_os("SMOLHTTPD_FS_IMAGE").unwrap_or_else(|| "fs_image".into());
    let image = smolhttpd_image::Image::new(dir).type_path("crate::files");
    if let Err(e) = image.generate() {
        eprintln!("error: smolhttpd image: {e}");
        panic!("smolhttpd image: {e}");
    }
}
