//! Host-side bindings generated from `wit/`, one module per plugin world. The shared `types`
//! and `host` interfaces are generated once (in `segmenter`) and reused by the other worlds, so a
//! transcript is the same Rust type whichever plugin sees it, and one linker serves every world.

pub mod segmenter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "segmenter-plugin",
    });
}

pub mod postprocessor {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "postprocessor-plugin",
        with: {
            "kiki:plugin/types": super::segmenter::kiki::plugin::types,
            "kiki:plugin/host": super::segmenter::kiki::plugin::host,
        },
    });
}

pub mod router {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "router-plugin",
        with: {
            "kiki:plugin/types": super::segmenter::kiki::plugin::types,
            "kiki:plugin/host": super::segmenter::kiki::plugin::host,
        },
    });
}
