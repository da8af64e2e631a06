//! The Twilio Verify provider: Twilio makes, sends and checks the code.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use serde::Deserialize;

use super::twilio::TwilioClient;
use super::{CodeMessage, ProviderVerdict, SendContext, SentMessage, SmsError, SmsSender};
use crate::domain::{Channel, Locale, MessageStatus, PhoneNumber, VerificationCode};

/// The locales Twilio Verify translates its messages into, as Twilio spells them
/// (twilio.com/docs/verify/supported-languages). Twilio answers an unknown `Locale` with a 404, so
/// any other tag sends none and Twilio picks the language by the number's country.
const VERIFY_LOCALES: &[&str] = &[
    "af", "ar", "ca", "zh", "zh-CN", "zh-HK", "hr", "cs", "da", "nl", "en", "en-GB", "et", "fi",
    "fr", "de", "el", "he", "hi", "hu", "id", "it", "ja", "kn", "ko", "lt", "ms", "mr", "nb", "pl",
    "pt", "pt-BR", "ro", "ru", "sk", "es", "sv", "tl", "te", "th", "tr", "uk", "vi",
];

/// The `Locale` to send for `locale`: Twilio's spelling of the exact tag, else of its language,
/// else none.
pub fn verify_locale(locale: &Locale) -> Option<&'static str> {
    let tag = locale.as_ref();
    let language = locale.language();
    VERIFY_LOCALES
        .iter()
        .find(|l| l.eq_ignore_ascii_case(tag))
        .or_else(|| VERIFY_LOCALES.iter().find(|l| **l == language))
        .copied()
}

/// Twilio Verify: Twilio makes the code, sends it, and checks it. Our own limits still apply on top.
#[derive(Debug, Clone)]
pub struct TwilioVerifySender {
    client: TwilioClient,
    verifications_url: String,
    check_url: String,
    /// `ANDROID_APP_HASH`, sent as `AppHash` with SMS verifications.
    app_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VerificationResource {
    sid: Option<String>,
    status: Option<String>,
}

impl TwilioVerifySender {
    pub(crate) fn new(
        client: TwilioClient,
        base_url: &str,
        service_sid: &str,
        app_hash: Option<String>,
    ) -> Self {
        Self {
            client,
            verifications_url: format!("{base_url}/v2/Services/{service_sid}/Verifications"),
            check_url: format!("{base_url}/v2/Services/{service_sid}/VerificationCheck"),
            app_hash,
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

    fn serves(&self, _channel: Channel) -> bool {
        true
    }

    fn send_code<'a>(
        &'a self,
        to: &'a PhoneNumber,
        message: &'a CodeMessage<'a>,
        _context: &'a SendContext,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>> {
        async move {
            let mut form = vec![("To", to.as_ref()), ("Channel", message.channel.as_str())];
            if let Some(locale) = message.locale.and_then(verify_locale) {
                form.push(("Locale", locale));
            }
            // Twilio appends the hash to SMS bodies only.
            if let (Channel::Sms, Some(hash)) = (message.channel, &self.app_hash) {
                form.push(("AppHash", hash.as_str()));
            }
            let answer = self.client.post_form(&self.verifications_url, &form).await?;
            if !answer.status.is_success() {
                return Err(answer.into_error());
            }
            let sid = serde_json::from_slice::<VerificationResource>(&answer.body)
                .ok()
                .and_then(|v| v.sid);
            tracing::info!(to = %to.masked(), channel = message.channel.as_str(), sid = sid.as_deref().unwrap_or(""), "verification started with Twilio Verify");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tags_twilio_publishes_are_sent() {
        let locale = |tag: &str| verify_locale(&Locale::parse(tag).unwrap());
        assert_eq!(locale("pt-br"), Some("pt-BR"));
        assert_eq!(locale("pt-PT"), Some("pt"));
        assert_eq!(locale("en-GB"), Some("en-GB"));
        assert_eq!(locale("zh-Hant-TW"), Some("zh"));
        assert_eq!(locale("DE"), Some("de"));
        assert_eq!(locale("tlh"), None);
        assert_eq!(locale("sw-KE"), None);
    }
}
