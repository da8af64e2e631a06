//! The console provider: writes each message to the log instead of sending it (development).

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{CodeMessage, SendContext, SentMessage, SmsError, SmsSender};
use crate::domain::{Channel, MessageStatus, PhoneNumber};

/// Nothing goes further than the log: there will be no delivery report.
const SENT: SentMessage = SentMessage {
    provider_message_id: None,
    status: MessageStatus::Sent,
};

/// Development provider: writes the message to the log instead of sending it, so a developer can copy
/// the code. Printing the code is its whole job, which is why production refuses it. It serves every
/// channel: the line names the one a real provider would have used.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSender;

impl ConsoleSender {
    pub fn new() -> Self {
        Self
    }
}

impl SmsSender for ConsoleSender {
    fn name(&self) -> &'static str {
        "console"
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
            let (code, body) = message.ours()?;
            // `to` then `code` first: tools read the code from this line (.ci/compose_check.py).
            tracing::info!(
                to = %to.masked(),
                code = code.expose(),
                channel = message.channel.as_str(),
                locale = message.locale.map(|l| l.as_ref()).unwrap_or(""),
                body,
                "console SMS provider: not sent, copy the code from here"
            );
            Ok(SENT)
        }
        .boxed()
    }

    fn send_message<'a>(
        &'a self,
        to: &'a PhoneNumber,
        body: &'a str,
        _context: &'a SendContext,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>> {
        async move {
            // The text is what a developer needs to see, exactly as it would have gone out.
            tracing::info!(
                to = %to.masked(),
                body,
                "console SMS provider: message not sent, its text is here"
            );
            Ok(SENT)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_custom_message_is_printed_whole_with_the_number_masked() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let phone = PhoneNumber::parse("+12125551234").unwrap();
        let context = SendContext {
            message_id: uuid::Uuid::nil(),
            verification_id: None,
        };
        let sender = ConsoleSender::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sent = tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(sender.send_message(&phone, "Your parcel is at the door", &context))
        });

        assert_eq!(sent, Ok(SENT));
        let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("Your parcel is at the door"), "{logs}");
        assert!(logs.contains(&phone.masked().to_string()), "{logs}");
        assert!(!logs.contains("2125551234"), "{logs}");
    }
}
