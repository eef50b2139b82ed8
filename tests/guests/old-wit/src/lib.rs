//! A retention plugin built against `wharf:plugin@0.1.0`, the contract this
//! host retired: loading it must fail naming both versions.
// The export glue wit-bindgen generates here is `unsafe` by nature.
#![allow(unreachable_pub, missing_docs, unsafe_code)]

wit_bindgen::generate!({
    inline: "
        package wharf:plugin@0.1.0;
        interface retention-policy {
            describe: func() -> string;
        }
        world retention {
            export retention-policy;
        }
    ",
});

struct Old;

impl exports::wharf::plugin::retention_policy::Guest for Old {
    fn describe() -> String {
        "from the past".into()
    }
}

export!(Old);
