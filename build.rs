//! Generates the httpd/APR bindings with bindgen, using the flags that the
//! chosen httpd's `apxs` (`$APXS`) and its APR config scripts report, and
//! compiles the C glue.

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

/// `apxs` of the httpd to build for: `$APXS` (`make APXS=...`), else the
/// one on PATH.
fn apxs() -> String {
    env::var("APXS").ok().filter(|a| !a.is_empty()).unwrap_or_else(|| "apxs".to_owned())
}

/// One of apxs's variables (`apxs -q NAME`), empty when unset.
fn apxs_var(apxs: &str, name: &str) -> String {
    query(apxs, &["-q", name]).join(" ")
}

/// A config script of APR or APR-util, as that httpd's apxs knows it: its
/// `APR_CONFIG` (`APU_CONFIG`), else `apr-1-config` in its `APR_BINDIR`
/// (`APU_BINDIR`), else on PATH.
fn config_script(apxs: &str, var: &str, bindir: &str, name: &str) -> String {
    let set = apxs_var(apxs, var);
    if !set.is_empty() {
        return set;
    }
    let dir = apxs_var(apxs, bindir);
    let in_dir = PathBuf::from(&dir).join(name);
    if !dir.is_empty() && in_dir.exists() { in_dir.display().to_string() } else { name.to_owned() }
}

/// Compiler flags for httpd's and APR's headers: defines and include paths,
/// all asked of the chosen httpd's apxs.
fn header_flags() -> Vec<String> {
    let apxs = apxs();
    let apr = config_script(&apxs, "APR_CONFIG", "APR_BINDIR", "apr-1-config");
    let apu = config_script(&apxs, "APU_CONFIG", "APU_BINDIR", "apu-1-config");
    let mut flags = query(&apr, &["--cppflags", "--includes"]);
    flags.extend(query(&apu, &["--includes"]));
    flags.extend(query(&apxs, &["-q", "EXTRA_CPPFLAGS"]));
    flags.push(format!("-I{}", apxs_var(&apxs, "INCLUDEDIR")));
    flags.push("-Iinclude".to_owned());
    flags
}

fn main() {
    let flags = header_flags();
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-changed=apache-glue");
    println!("cargo:rerun-if-env-changed=APXS");

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
