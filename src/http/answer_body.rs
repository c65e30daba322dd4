//! Answer bodies whose optional fields are left out, not sent as `null`.

/// Declares an answer body in two parts: the fields that are always sent,
/// then, under `optional`, `Option` fields that are left out of the JSON
/// when `None`. Which fields an answer carries depends on its outcome, and
/// clients read "absent" rather than `null`: writing that once per body
/// keeps it from being forgotten on one field.
macro_rules! answer_body {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $type:ty,)*
        }
        optional {
            $($(#[$optional_meta:meta])* pub $optional:ident: $optional_type:ty,)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
            $(
                $(#[$optional_meta])*
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $optional: $optional_type,
            )*
        }
    };
}

pub(crate) use answer_body;
