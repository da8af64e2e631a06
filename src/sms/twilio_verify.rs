//! The Twilio Verify provider: Twilio makes, sends and checks the code.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use serde::Deserialize;

use super::twilio::TwilioClient;
use super::{ProviderVerdict, SendContext, SentMessage, SmsError, SmsSender};
use crate::domain::{MessageStatus, PhoneNumber, VerificationCode};

/// Twilio Verify: Twilio makes the code, sends it, and checks it. Our own limits still apply on top.
#[derive(Debug, Clone)]
pub struct TwilioVerifySender {
    client: TwilioClient,
    verifications_url: String,
    check_url: String,
}

#[derive(Debug, Deserialize)]
struct VerificationResource {
    sid: Option<String>,
    status: Option<String>,
}

impl TwilioVerifySender {
    pub(crate) fn new(client: TwilioClient, base_url: &str, service_sid: &str) -> Self {
        Self {
            client,
            verifications_url: format!("{base_url}/v2/Services/{service_sid}/Verifications"),
            check_url: format!("{base_url}/v2/Services/{service_sid}/VerificationCheck"),
        }
    }
}

impl SmsSender for TwilioVerifySender {
    fn name(&self) -> &'static str {
        "twilio-verify"
    }

    fn checks_codes(&self) -> bool {
        true
    }

    fn send_code<'a>(
        &'a self,
        to: &'a PhoneNumber,
        _code: Option<&'a VerificationCode>,
        _context: &'a SendContext,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>> {
        async move {
            let form = [("To", to.as_ref()), ("Channel", "sms")];
            let answer = self.client.post_form(&self.verifications_url, &form).await?;
            if !answer.status.is_success() {
                return Err(answer.into_error());
            }
            let sid = serde_json::from_slice::<VerificationResource>(&answer.body)
                .ok()
                .and_then(|v| v.sid);
            tracing::info!(to = %to.masked(), sid = sid.as_deref().unwrap_or(""), "verification started with Twilio Verify");
            Ok(SentMessage {
                provider_message_id: sid,
                status: MessageStatus::Accepted,
            })
        }
        .boxed()
    }

    fn check_code<'a>(
        &'a self,
        to: &'a PhoneNumber,
        code: &'a VerificationCode,
    ) -> BoxFuture<'a, Result<ProviderVerdict, SmsError>> {
        async move {
            let form = [("To", to.as_ref()), ("Code", code.expose())];
            let answer = self.client.post_form(&self.check_url, &form).await?;
            if answer.status.is_success() {
                let resource: VerificationResource =
                    serde_json::from_slice(&answer.body).map_err(|_| SmsError::Unavailable {
                        reason: "Twilio's VerificationCheck answer was not JSON".into(),
                        retry_after: None,
                    })?;
                // A wrong code is a 200 with status "pending"; "approved" is the only yes.
                return Ok(match resource.status.as_deref() {
                    Some("approved") => ProviderVerdict::Approved,
                    Some("pending") => ProviderVerdict::WrongCode,
                    _ => ProviderVerdict::NotFound,
                });
            }
            let code = answer.error_body().code;
            // Twilio soft-deletes a verification once approved, expired or locked: 404 / 20404.
            if answer.status == StatusCode::NOT_FOUND || code == Some(20404) {
                return Ok(ProviderVerdict::NotFound);
            }
            if code == Some(60202) {
                return Ok(ProviderVerdict::MaxAttemptsReached);
            }
            Err(answer.into_error())
        }
        .boxed()
    }

    fn send_message<'a>(
        &'a self,
        _to: &'a PhoneNumber,
        _body: &'a str,
        _context: &'a SendContext,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>> {
        Box::pin(async {
            Err(SmsError::Rejected {
                provider_code: None,
                message: "Twilio Verify cannot send free text; use the Messaging provider".into(),
            })
        })
    }
}
