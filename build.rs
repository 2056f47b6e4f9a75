//! Compiles schema/*.capnp into Rust (included by src/schema.rs).
fn main() {
    println!("cargo:rerun-if-changed=schema");
    let mut cmd = capnpc::CompilerCommand::new();
    cmd.src_prefix("schema");
    // Generated modules are included under `crate::schema` (src/schema.rs),
    // from OUT_DIR; nothing generated is checked in.
    cmd.default_parent_module(vec!["schema".into()]);
    let mut entries: Vec<_> = std::fs::read_dir("schema")
        .expect("schema/ exists in the source tree")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "capnp"))
        .collect();
    entries.sort();
    for p in &entries {
        cmd.file(p);
    }
    if let Err(e) = cmd.run() {
        panic!("capnp compile failed ({e}); install the compiler: apt-get install capnproto");
    }
}
