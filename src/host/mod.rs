//! The proxy-wasm glue: root and HTTP contexts that read from the host,
//! ask the engine, and write back. Only host calls that return `Result`
//! are used on request paths, so a host error never unwinds into the VM.
//!
//! Waiting for keys: a request that needs a fetch sends the callout from
//! its own context (allowed on every host) and is resumed from that
//! callout's answer. Other paused requests in the same VM are finished
//! through `set_effective_context` when the answer arrives, and by the
//! root's periodic check (every `TICK`) when another worker fetched.
//!
//! One file per part: the contexts (`root`, `http`), the adapters behind
//! the logic's traits (`store`, `metrics`, `crypto`, `clock`), and what the
//! contexts do with the host (`headers` read, `callout`, `conclude`,
//! `reply`, `upstream`, `probe`). Only `headers` is built outside wasm32:
//! its reader of the serialized header map is tested on the host.

pub mod headers;

#[cfg(target_arch = "wasm32")]
mod callout;
#[cfg(target_arch = "wasm32")]
mod clock;
#[cfg(target_arch = "wasm32")]
mod conclude;
#[cfg(target_arch = "wasm32")]
mod crypto;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod probe;
#[cfg(target_arch = "wasm32")]
mod reply;
#[cfg(target_arch = "wasm32")]
mod root;
#[cfg(target_arch = "wasm32")]
mod store;
#[cfg(target_arch = "wasm32")]
mod upstream;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
