//! Host-side bindings generated from `wit/`, one module per plugin world. The shared `types`
//! interface is generated once (in `segmenter`) and reused by the others, so a transcript is
//! the same Rust type whichever plugin sees it.

pub mod segmenter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "segmenter-plugin",
    });
}
