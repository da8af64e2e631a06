//! Domain types that can only hold valid values.

mod locale;
mod message;
mod phone_number;
mod verification_code;

pub use locale::{Locale, LocaleError, MAX_LOCALE_LEN};
pub use message::{Channel, MessageStatus};
pub use phone_number::{PhoneNumber, PhoneNumberError};
pub use verification_code::{CodeHasher, VerificationCode, VerificationCodeError};
