//! Generates `include/gateway.h` from `src/ffi/` with cbindgen, writing it only when its
//! content changed (so an unchanged header keeps its mtime and CI can diff it), and writes
//! `gateway.pc` next to the built libraries for pkg-config, and sets the Apple link arguments
//! (the shared library's install name, no dylib that nothing uses).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    generate_header(&root);
    write_pkg_config(&root);
    apple_link_args();
}

/// Apple targets: `libgateway.dylib` names itself `@rpath/libgateway.dylib` (not the absolute
/// path it was built at), so an app that embeds it finds it through its own rpath; and every
/// image links only the dylibs it uses. The `libc` crate declares `#[link(name = "iconv")]`
/// for its iconv bindings, which we never call; without `-dead_strip_dylibs` each image would
/// load `libiconv.2.dylib` for nothing. Cargo passes these to every linked target of this
/// package (the dylib, the binary, tests, examples, benches); the static library is not linked.
fn apple_link_args() {
    if env::var("CARGO_CFG_TARGET_VENDOR").as_deref() != Ok("apple") {
        return;
    }
    println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libgateway.dylib");
    println!("cargo:rustc-link-arg=-Wl,-dead_strip_dylibs");
}

fn generate_header(root: &Path) {
    let mut config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("read cbindgen.toml");
    let abi = fs::read_to_string(root.join("src/ffi/mod.rs"))
        .expect("read src/ffi/mod.rs")
        .lines()
        .find_map(|line| line.strip_prefix("pub const ABI_VERSION: u32 = "))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("src/ffi/mod.rs defines `pub const ABI_VERSION: u32 = N;`")
        .to_owned();
    let version = |part: &str| env::var(format!("CARGO_PKG_VERSION_{part}")).expect("version");
    config.after_includes = Some(format!(
        "\n/* The version of the library this header was generated from (see gw_version). */\n\
         #define GATEWAY_VERSION_MAJOR {}\n#define GATEWAY_VERSION_MINOR {}\n\
         #define GATEWAY_VERSION_PATCH {}\n\
         /* The C ABI this header describes (see gw_abi_version). */\n\
         #define GATEWAY_ABI_VERSION {abi}",
        version("MAJOR"),
        version("MINOR"),
        version("PATCH"),
    ));
    // Only the C ABI: cbindgen treats src/ffi/mod.rs as a crate root and follows its modules.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate include/gateway.h");
    let mut header = Vec::new();
    bindings.write(&mut header);
    let path = root.join("include/gateway.h");
    if fs::read(&path).ok().as_deref() != Some(header.as_slice()) {
        fs::create_dir_all(root.join("include")).expect("create include/");
        fs::write(&path, header).expect("write include/gateway.h");
    }
}

/// `<target>/<profile>/gateway.pc`, naming this checkout's header and that directory's
/// libraries. OUT_DIR is `<target>/<profile>/build/<pkg>-<hash>/out`.
fn write_pkg_config(root: &Path) {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let Some(lib_dir) = out_dir.ancestors().nth(3) else {
        return;
    };
    // `rustc --print native-static-libs` for the targets we build on; the static library
    // needs them, the shared one links them itself. On Apple, rustc also lists `-liconv`
    // (the `libc` crate's declaration; nothing in the archive calls iconv, see
    // `apple_link_args`), left out here; nothing needs CoreFoundation or any other framework.
    let private = match env::var("CARGO_CFG_TARGET_VENDOR").as_deref() {
        Ok("apple") => "-lSystem -lc -lm",
        _ => "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc",
    };
    let pc = format!(
        "prefix={root}\nincludedir=${{prefix}}/include\nlibdir={lib}\n\n\
         Name: gateway\nDescription: {description}\nVersion: {version}\n\
         Cflags: -I${{includedir}}\nLibs: -L${{libdir}} -lgateway\nLibs.private: {private}\n",
        root = root.display(),
        lib = lib_dir.display(),
        description = env::var("CARGO_PKG_DESCRIPTION").unwrap_or_default(),
        version = env::var("CARGO_PKG_VERSION").expect("version"),
    );
    let path = lib_dir.join("gateway.pc");
    if fs::read_to_string(&path).ok().as_deref() != Some(pc.as_str()) {
        // Best effort: the pc file is a convenience, the build does not depend on it.
        let _ = fs::write(path, pc);
    }
}
