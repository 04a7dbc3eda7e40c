//! `astcti-server`: see the library's `app` module.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(astcti_server::app::main());
}
