//! Compiles `proto/ballista.proto` with `protox` (pure Rust), so building
//! Ballista needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/ballista.proto");
    let descriptors = protox::compile(["ballista.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // A stage's plan is encoded once and sent with each of its tasks:
        // as `Bytes`, every launch shares it instead of copying it.
        .bytes(".ballista.TaskDefinition.plan")
        .bytes(".ballista.TaskReads.hollow_plan")
        .compile_fds(descriptors)?;
    Ok(())
}
