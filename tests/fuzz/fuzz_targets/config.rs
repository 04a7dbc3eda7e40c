//! The configuration reader: any text is a configuration or a one-line error naming the file.
#![no_main]
use astcti_server::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::from_xml(text, std::path::Path::new("f.xml"), std::path::Path::new("/")) {
        let line = e.to_string();
        assert!(line.starts_with("f.xml:") && !line.contains('\n'), "{line:?}");
    }
});
