/work/main/tests/podman/actor/target/debug/deps/pod_actor-b7058d1b8bdf259c.d: src/main.rs Cargo.toml

/work/main/tests/podman/actor/target/debug/deps/libpod_actor-b7058d1b8bdf259c.rmeta: src/main.rs Cargo.toml

src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
