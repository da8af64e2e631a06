//! Twilio request validation: `X-Twilio-Signature` is base64(HMAC-SHA1(auth token, URL followed by
//! every POST parameter as name then value, sorted by name)).
//!
//! The URL must be the public one Twilio was configured with (scheme, host, any port, path and
//! query exactly as Twilio sees them), not the one the proxy forwarded to us: Twilio signs what it
//! called. Twilio's SDKs also retry with the default port added or removed; this module does not,
//! so the caller passes the URL as configured.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The `X-Twilio-Signature` value Twilio would send for this request.
pub fn signature(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `header` is the signature of this request, compared in constant time. A header that is
/// not canonical base64 is simply not a valid signature.
pub fn is_valid(auth_token: &[u8], url: &str, params: &[(String, String)], header: &str) -> bool {
    // The strict decoder maps each accepted string to one byte string, so comparing bytes is as
    // strict as comparing the header text.
    let Ok(tag) = STANDARD.decode(header) else {
        return false;
    };
    mac(auth_token, url, params).verify_slice(&tag).is_ok()
}

fn mac(auth_token: &[u8], url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    // Like twilio-python's `compute_signature` and twilio-node's `getExpectedTwilioSignature`:
    // sort by name, a repeated name's values sorted among themselves, identical pairs once.
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();

    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token).expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    // Vectors from twilio/twilio-python, tests/unit/test_request_validator.py (token "12345").
    const TOKEN: &[u8] = b"12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const EXPECTED: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

    // In the test's dict order, not sorted, so the sorting is exercised.
    fn voice_params() -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ])
    }

    #[test]
    fn twilio_python_vector_with_query_string() {
        assert_eq!(signature(TOKEN, URL, &voice_params()), EXPECTED);
        assert!(is_valid(TOKEN, URL, &voice_params(), EXPECTED));
    }

    #[test]
    fn twilio_python_vectors_with_explicit_ports() {
        // The port is part of the signed URL: these are the SDK's "adds/removes port" expectations.
        for (url, expected) in [
            (
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                "kvajT1Ptam85bY51eRf/AJRuM3w=",
            ),
            (
                "http://mycompany.com:80/myapp.php?foo=1&bar=2",
                "0ZXoZLH/DfblKGATFgpif+LLRf4=",
            ),
            (
                "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
                "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
            ),
        ] {
            assert_eq!(signature(TOKEN, url, &voice_params()), expected, "{url}");
            assert!(is_valid(TOKEN, url, &voice_params(), expected), "{url}");
        }
        assert!(!is_valid(
            TOKEN,
            URL,
            &voice_params(),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
    }

    #[test]
    fn twilio_python_vector_without_params() {
        // `test_validation_of_body_succeeds`: a JSON body is signed through the URL alone.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2\
                   &bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        assert_eq!(signature(TOKEN, url, &[]), "a9nBmqA0ju/hNViExpshrM61xv4=");
    }

    #[test]
    fn twilio_python_vector_with_a_repeated_name() {
        // `test_compute_signature_duplicate_multi_dict`: values of one name sorted ("1234" before
        // "5678"), and "Sid" before "SidAccount" because names sort alone, not glued to values.
        let params = pairs(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            signature(TOKEN, URL, &params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn an_identical_pair_counts_once_as_in_the_sdks() {
        let mut params = voice_params();
        params.push(("Digits".into(), "1234".into()));
        assert_eq!(signature(TOKEN, URL, &params), EXPECTED);
    }

    #[test]
    fn wrong_token_is_refused() {
        assert!(!is_valid(b"12346", URL, &voice_params(), EXPECTED));
    }

    #[test]
    fn one_changed_param_is_refused() {
        let mut params = voice_params();
        params[1].1 = "1235".into();
        assert!(!is_valid(TOKEN, URL, &params, EXPECTED));
    }

    #[test]
    fn changed_url_is_refused() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=3";
        assert!(!is_valid(TOKEN, url, &voice_params(), EXPECTED));
    }

    #[test]
    fn header_that_is_not_base64_is_refused() {
        for header in [
            "not base64!",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8",
            " RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        ] {
            assert!(!is_valid(TOKEN, URL, &voice_params(), header), "{header:?}");
        }
    }

    #[test]
    fn empty_header_is_refused() {
        assert!(!is_valid(TOKEN, URL, &voice_params(), ""));
    }

    #[test]
    fn truncated_signature_is_refused() {
        // Valid base64 of a prefix of the right tag: the length must match too.
        let tag = STANDARD.decode(EXPECTED).unwrap();
        let short = STANDARD.encode(&tag[..10]);
        assert!(!is_valid(TOKEN, URL, &voice_params(), &short));
    }
}
