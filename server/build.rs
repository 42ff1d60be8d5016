//! Generates the `engram.v1` gRPC code and the file descriptor set used by server reflection.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Debian's protobuf-compiler when installed, else the protoc shipped in the
    // protoc-bin-vendored crate, so a fresh machine builds with cargo alone.
    if std::env::var_os("PROTOC").is_none() {
        let protoc = if std::path::Path::new("/usr/bin/protoc").exists() {
            std::path::PathBuf::from("/usr/bin/protoc")
        } else {
            protoc_bin_vendored::protoc_bin_path()?
        };
        // SAFETY: build scripts are single-threaded; set before any code reads the environment.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .codec_path("crate::grpc::codec::EngramCodec")
        .file_descriptor_set_path(out.join("engram_descriptor.bin"))
        .compile_protos(&["proto/engram/v1/engram.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/engram/v1/engram.proto");
    Ok(())
}
