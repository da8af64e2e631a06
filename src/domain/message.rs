//! What a message record says: the channel it went by and its delivery status, with the order that
//! a status never moves back in.

use std::fmt;

/// How a code reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Whatsapp,
    Call,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Sms, Channel::Whatsapp, Channel::Call];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Call => "call",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message's delivery status. `rank` orders them: an update applies only to a higher rank, so a
/// late or duplicate report changes nothing, and the first final status wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Handed to the provider, no answer yet.
    Sending,
    /// The provider refused it outright.
    Rejected,
    /// The provider took it (Twilio `accepted`, `queued`, `scheduled`, a created Verify verification).
    Accepted,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    /// WhatsApp: read, after delivered.
    Read,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 8] = [
        MessageStatus::Sending,
        MessageStatus::Rejected,
        MessageStatus::Accepted,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Undelivered,
        MessageStatus::Failed,
        MessageStatus::Read,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Sending => "sending",
            MessageStatus::Rejected => "rejected",
            MessageStatus::Accepted => "accepted",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Failed => "failed",
            MessageStatus::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Position in the never-moves-back order; `rejected` and the three final statuses share one.
    pub fn rank(self) -> u8 {
        match self {
            MessageStatus::Sending => 0,
            MessageStatus::Accepted => 1,
            MessageStatus::Sent => 2,
            MessageStatus::Rejected
            | MessageStatus::Delivered
            | MessageStatus::Undelivered
            | MessageStatus::Failed => 3,
            MessageStatus::Read => 4,
        }
    }

    /// Whether a message now in `self` may move to `next`: forward only, and `read` only from
    /// `delivered` (a read receipt never overrides a failure).
    pub fn may_become(self, next: MessageStatus) -> bool {
        match next {
            MessageStatus::Read => self == MessageStatus::Delivered,
            _ => next.rank() > self.rank(),
        }
    }

    /// Twilio's `MessageStatus` of a status callback; `None` for values that say nothing new
    /// (`receiving`, `received` are inbound).
    pub fn from_twilio_message(s: &str) -> Option<Self> {
        Some(match s {
            // Twilio's own `sending` is still inside Twilio: not yet sent to the carrier.
            "accepted" | "queued" | "scheduled" | "sending" => MessageStatus::Accepted,
            "sent" => MessageStatus::Sent,
            "delivered" => MessageStatus::Delivered,
            "undelivered" => MessageStatus::Undelivered,
            "failed" | "canceled" => MessageStatus::Failed,
            "read" => MessageStatus::Read,
            _ => return None,
        })
    }

    /// Twilio's `CallStatus`: a completed call delivered the code; a call nobody took did not.
    pub fn from_twilio_call(s: &str) -> Option<Self> {
        Some(match s {
            "queued" | "initiated" => MessageStatus::Accepted,
            "ringing" | "in-progress" => MessageStatus::Sent,
            "completed" => MessageStatus::Delivered,
            "busy" | "no-answer" | "failed" | "canceled" => MessageStatus::Undelivered,
            _ => return None,
        })
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::*;
    use super::*;

    #[test]
    fn a_status_never_moves_back() {
        assert!(Sending.may_become(Accepted));
        assert!(Accepted.may_become(Delivered));
        assert!(Delivered.may_become(Read));
        assert!(!Delivered.may_become(Sent));
        assert!(!Delivered.may_become(Undelivered));
        assert!(!Undelivered.may_become(Delivered));
        assert!(!Undelivered.may_become(Read));
        assert!(!Sent.may_become(Read));
        assert!(!Delivered.may_become(Delivered));
    }

    #[test]
    fn names_round_trip() {
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
        }
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn twilio_statuses_map_to_ours() {
        assert_eq!(MessageStatus::from_twilio_message("queued"), Some(Accepted));
        assert_eq!(
            MessageStatus::from_twilio_message("undelivered"),
            Some(Undelivered)
        );
        assert_eq!(MessageStatus::from_twilio_message("received"), None);
        assert_eq!(
            MessageStatus::from_twilio_call("completed"),
            Some(Delivered)
        );
        assert_eq!(
            MessageStatus::from_twilio_call("no-answer"),
            Some(Undelivered)
        );
    }
}
