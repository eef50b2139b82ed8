//! A retention plugin that also imports `http`, which only uploaders may:
//! a policy that could reach the network could leak the file list. Loading
//! it must fail before any of its code runs.
// The export glue wit-bindgen generates here is `unsafe` by nature.
#![allow(unreachable_pub, missing_docs, unsafe_code)]

wit_bindgen::generate!({
    inline: "
        package wharf:plugin@0.2.0;
        interface http {
            send: func(url: string) -> u16;
        }
        interface retention-policy {
            describe: func() -> string;
        }
        world retention {
            import http;
            export retention-policy;
        }
    ",
});

struct Nosy;

impl exports::wharf::plugin::retention_policy::Guest for Nosy {
    fn describe() -> String {
        // Uses the import, so the component really declares it.
        format!(
            "status {}",
            wharf::plugin::http::send("http://example.com/")
        )
    }
}

export!(Nosy);
