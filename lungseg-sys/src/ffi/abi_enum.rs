//! What every ABI enum derives from its one definition. The enum itself is written out in
//! source as a plain `#[repr(C)]` enum with explicit values, where cbindgen reads it;
//! `abi_enum!` names its variants once and derives the list of values, the names and the
//! conversion from a C integer. `name` is an exhaustive match, so a variant missing from the
//! list does not compile, and a listed name that is not a variant does not either.

use crate::error::Error;

/// A C integer that is no value of an ABI enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownValue {
    pub enum_name: &'static str,
    pub value: u32,
    /// `(name, value)` of every variant, for the message.
    pub known: &'static [(&'static str, u32)],
}

impl From<UnknownValue> for Error {
    fn from(u: UnknownValue) -> Error {
        let known: Vec<String> = u.known.iter().map(|(n, v)| format!("{n} = {v}")).collect();
        Error::invalid(format!(
            "{} is not a {} ({})",
            u.value,
            u.enum_name,
            known.join(", ")
        ))
    }
}

/// Derives `ALL`, `name`, `c_name` and `TryFrom<u32>` for an ABI enum (see the module docs).
macro_rules! abi_enum {
    ($t:ident { $($v:ident),+ $(,)? }) => {
        impl $t {
            /// Every value, in declaration order.
            pub const ALL: &'static [$t] = &[$($t::$v),+];
            const KNOWN: &'static [(&'static str, u32)] = &[$((stringify!($v), $t::$v as u32)),+];

            /// The C constant's name, e.g. `"LUNGSEG_DEVICE_CPU"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $($t::$v => stringify!($v)),+
                }
            }

            /// [`Self::name`] as a static NUL-terminated C string.
            pub const fn c_name(self) -> *const libc::c_char {
                match self {
                    $($t::$v => concat!(stringify!($v), "\0").as_ptr().cast()),+
                }
            }
        }

        impl TryFrom<u32> for $t {
            type Error = $crate::ffi::UnknownValue;
            fn try_from(value: u32) -> Result<Self, Self::Error> {
                Self::ALL.iter().copied().find(|v| *v as u32 == value).ok_or(
                    $crate::ffi::UnknownValue {
                        enum_name: stringify!($t),
                        value,
                        known: Self::KNOWN,
                    },
                )
            }
        }
    };
}
pub(crate) use abi_enum;
