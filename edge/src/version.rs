//! What `opmas-edge --version` prints: the version, the target triple and the
//! cargo features the binary was built with, so that an operator can tell the
//! small build from the TLS build (`opmas-edge-tls`) on a router.

/// Whether this binary can connect to `mqtts://` URLs.
pub const TLS: bool = cfg!(feature = "tls");

/// The enabled optional features, as the version line shows them.
#[cfg(feature = "tls")]
macro_rules! features {
    () => {
        "tls"
    };
}
#[cfg(not(feature = "tls"))]
macro_rules! features {
    () => {
        "none"
    };
}

/// `0.1.0 (mips-unknown-linux-musl; features: tls)`: for clap's `version`,
/// which prefixes the binary name.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("OPMAS_TARGET"), "; features: ", features!(), ")");

/// [`VERSION`] as a function, for callers that prefer one.
pub fn version_string() -> &'static str {
    VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_target_and_features() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
        assert!(VERSION.contains(env!("OPMAS_TARGET")) && !env!("OPMAS_TARGET").is_empty(), "{VERSION}");
        assert_eq!(VERSION.ends_with("features: tls)"), TLS, "{VERSION}");
    }
}
