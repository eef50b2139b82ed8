//! A retention plugin built against `wharf:plugin@0.3.0`, which this host
//! does not implement: loading it must fail naming both versions.
// The export glue wit-bindgen generates here is `unsafe` by nature.
#![allow(unreachable_pub, missing_docs, unsafe_code)]

wit_bindgen::generate!({
    inline: "
        package wharf:plugin@0.3.0;
        interface retention-policy {
            describe: func() -> string;
        }
        world retention {
            export retention-policy;
        }
    ",
});

struct Future;

impl exports::wharf::plugin::retention_policy::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(Future);
