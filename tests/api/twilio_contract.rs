//! Checks a request our providers sent against Twilio's own OpenAPI document, so a drift from
//! Twilio's contract (a renamed field, a missing required one, the wrong content type) fails a test.

use base64::Engine;
use serde_json::{Map, Value};
use wiremock::Request;

use crate::helpers::{TWILIO_SID, TWILIO_TOKEN};

pub const MESSAGES: (&str, &str) = (
    "api_v2010_messages.reduced.json",
    "/2010-04-01/Accounts/{AccountSid}/Messages.json",
);
pub const CALLS: (&str, &str) = (
    "api_v2010_calls.reduced.json",
    "/2010-04-01/Accounts/{AccountSid}/Calls.json",
);
pub const VERIFICATIONS: (&str, &str) = (
    "verify_v2.reduced.json",
    "/v2/Services/{ServiceSid}/Verifications",
);
pub const VERIFICATION_CHECK: (&str, &str) = (
    "verify_v2.reduced.json",
    "/v2/Services/{ServiceSid}/VerificationCheck",
);

fn spec(file: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/twilio/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("spec file")).expect("spec JSON")
}

fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<_> = template.split('/').collect();
    let p: Vec<_> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// The operation's body schema, with the document's components beside it so its `$ref`s
/// (`#/components/schemas/…`) resolve, and no properties beyond those it names.
fn strict_schema(spec: &Value, schema: &Value) -> Value {
    let mut schema = schema.clone();
    schema["additionalProperties"] = Value::Bool(false);
    schema["components"] = spec["components"].clone();
    schema
}

/// Panics unless `request` is a valid call of the operation `(file, path template)`.
#[track_caller]
pub fn assert_valid(request: &Request, (file, template): (&str, &str)) {
    let spec = spec(file);
    let operation = &spec["paths"][template]["post"];
    assert!(operation.is_object(), "{template} is not in {file}");
    assert_eq!(request.method.as_str(), "POST");
    assert!(
        path_matches(template, request.url.path()),
        "{} does not match {template}",
        request.url.path()
    );

    // Security: HTTP basic with the Account SID and Auth Token.
    let scheme = &spec["components"]["securitySchemes"]["accountSid_authToken"];
    assert_eq!(scheme["scheme"], "basic");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
    );
    assert_eq!(request.headers["authorization"], expected.as_str());

    // Body: the content type the operation declares, and the form fields valid against its schema,
    // with no field the schema does not name.
    let content_type = request.headers["content-type"].to_str().unwrap();
    let content = &operation["requestBody"]["content"];
    assert!(
        content.get(content_type).is_some(),
        "content type {content_type} is not accepted by {template}"
    );
    let schema = strict_schema(&spec, &content[content_type]["schema"]);
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&request.body).expect("form body");
    let mut body = Map::new();
    for (k, v) in fields {
        assert!(
            body.insert(k.clone(), Value::String(v)).is_none(),
            "{k} twice"
        );
    }
    let body = Value::Object(body);
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "request to {template} breaks Twilio's schema: {errors:?}; body {body}"
    );
}

#[test]
fn the_default_base_urls_are_the_servers_twilio_publishes() {
    let messages = spec(MESSAGES.0);
    let verify = spec(VERIFICATIONS.0);
    let config = phone_verify::config::Config::from_source(
        &[("TWILIO_ACCOUNT_SID", "AC1"), ("TWILIO_AUTH_TOKEN", "t")]
            .into_iter()
            .collect::<std::collections::HashMap<&str, &str>>(),
    )
    .unwrap();
    let twilio = config.sms.twilio.unwrap();
    assert_eq!(messages["servers"][0]["url"], twilio.api_base_url.as_str());
    assert_eq!(verify["servers"][0]["url"], twilio.verify_base_url.as_str());
}

#[test]
fn the_validator_rejects_a_drifted_request() {
    // A request with a misspelt field must fail, or the checks above prove nothing.
    let spec = spec(MESSAGES.0);
    let schema = strict_schema(
        &spec,
        &spec["paths"][MESSAGES.1]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
            ["schema"],
    );
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(
        validator.is_valid(
            &serde_json::json!({"To": "+12125551234", "From": "+15005550006", "Body": "x"})
        )
    );
    assert!(validator.is_valid(&serde_json::json!({
        "To": "+12125551234", "From": "+15005550006", "Body": "x",
        "StatusCallback": "https://verify.example.com/webhooks/twilio/status"
    })));
    assert!(!validator.is_valid(&serde_json::json!({
        "To": "+12125551234", "From": "+15005550006", "Body": "x",
        "StatusCallbackUrl": "https://verify.example.com/webhooks/twilio/status"
    })));
    assert!(
        !validator.is_valid(&serde_json::json!({"to": "+12125551234", "From": "+15005550006"}))
    );
    assert!(!validator.is_valid(&serde_json::json!({"From": "+15005550006", "Body": "x"})));
}

#[test]
fn the_calls_validator_rejects_a_drifted_call() {
    let spec = spec(CALLS.0);
    let schema = strict_schema(
        &spec,
        &spec["paths"][CALLS.1]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
            ["schema"],
    );
    let validator = jsonschema::validator_for(&schema).unwrap();
    let twiml = "<Response><Say>1, 2, 3</Say></Response>";
    assert!(validator.is_valid(
        &serde_json::json!({"To": "+12125551234", "From": "+15005550006", "Twiml": twiml})
    ));
    assert!(!validator.is_valid(
        &serde_json::json!({"To": "+12125551234", "From": "+15005550006", "TwiML": twiml})
    ));
    assert!(!validator.is_valid(&serde_json::json!({"To": "+12125551234", "Twiml": twiml})));
}
