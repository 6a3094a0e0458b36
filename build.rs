//! Generates the httpd/APR bindings with bindgen, using the flags that the
//! installed `apxs` and `apr-1-config` report, and compiles the C glue.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Runs a `*-config`-style query and splits its answer into arguments.
fn query(program: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install apache2-dev): {e}"));
    assert!(out.status.success(), "{program} {args:?} failed");
    String::from_utf8(out.stdout)
        .expect("non-UTF-8 output")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Compiler flags for httpd's and APR's headers: defines and include paths.
fn header_flags() -> Vec<String> {
    let mut flags = query("apr-1-config", &["--cppflags", "--includes"]);
    flags.extend(query("apu-1-config", &["--includes"]));
    flags.extend(query("apxs", &["-q", "EXTRA_CPPFLAGS"]));
    let includedir = query("apxs", &["-q", "INCLUDEDIR"]);
    flags.push(format!("-I{}", includedir.join(" ")));
    flags.push("-Iinclude".to_owned());
    flags
}

fn main() {
    let flags = header_flags();
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-changed=apache-glue");

    let mut glue = cc::Build::new();
    for f in &flags {
        glue.flag(f);
    }
    for entry in std::fs::read_dir("apache-glue").expect("apache-glue/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "c") {
            glue.file(path);
        }
    }
    glue.compile("apache_glue");

    let bindings = bindgen::Builder::default()
        .header("include/wrapper.h")
        .clang_args(&flags)
        .rust_edition(bindgen::RustEdition::Edition2024)
        .generate_comments(false)
        .allowlist_function("ap_.*|apr_.*|event_rs_.*")
        .allowlist_type("ap_.*|apr_.*|.*_rec|.*_score|conn_state_.*|conn_sense_e|module_struct|command_struct")
        .allowlist_var("ap_.*|AP_.*|APR_.*|APLOG_.*|MODULE_MAGIC_.*|SERVER_.*|OK|DECLINED|DONE|RSRC_CONF|GLOBAL_ONLY|APEXIT_.*|MPM_CHILD_.*|HTTP_.*|event_rs_.*")
        .derive_default(true)
        .layout_tests(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen over httpd headers");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");

    // httpd's symbols are resolved when apache2 loads the module; test
    // executables that link this crate never call them.
    println!("cargo:rustc-link-arg=-Wl,--unresolved-symbols=ignore-all");
}
