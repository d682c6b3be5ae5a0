//! The AI gateway (issue 10): provider credentials never leave the platform.
//!
//! - [`keys`]: virtual keys, minted per customer and provider by the
//!   credential exchange, stored only as a SHA-256, checked on every call
//!   against their expiry, their API key and their customer.
//! - [`gateway`]: forwards a call made with a virtual key to the provider's
//!   configured base URL with the operator's key, streams the answer back
//!   as it arrives, and answers refusals in the provider's own error shape.
//! - [`metering`]: reads the provider's own usage fields (streamed or not)
//!   and stores one `ai_usage` row per call; the per-day views and the
//!   per-customer budget.
//! - [`admin`]: the admin console's budget control (audited).
//!
//! An integration (layer 5): it uses the domain (customers), the accounts
//! layer (the admin audit log), the database and the configuration, never
//! another integration.

pub mod admin;
pub mod gateway;
pub mod keys;
pub mod metering;

/// A provider the gateway can reach. The spelling is the one of the
/// exchange's `providers` list (ACTION_API.md § 1) and of
/// `ai_virtual_keys.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// `anthropic`: the Messages API (`POST /ai/v1/messages`).
    Anthropic,
    /// `openai`: Chat Completions (`POST /ai/chat/completions`).
    OpenAi,
    /// `openrouter`: OpenAI-compatible Chat Completions
    /// (`POST /ai/chat/completions`).
    OpenRouter,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 3] = [Provider::Anthropic, Provider::OpenAi, Provider::OpenRouter];

    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "openai",
            Provider::OpenRouter => "openrouter",
        }
    }

    /// The provider spelled `name` (trimmed, any case).
    pub fn parse(name: &str) -> Option<Provider> {
        let name = name.trim().to_ascii_lowercase();
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Which API shapes the provider speaks.
    pub fn dialect(self) -> Dialect {
        match self {
            Provider::Anthropic => Dialect::Anthropic,
            Provider::OpenAi | Provider::OpenRouter => Dialect::OpenAi,
        }
    }
}

/// The request, response and error shapes of a family of providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Anthropic's Messages API: key in `x-api-key`, errors
    /// `{"type":"error","error":{"type":…,"message":…}}`.
    Anthropic,
    /// OpenAI's Chat Completions: `Authorization: Bearer`, errors
    /// `{"error":{"message":…,"type":…,"param":null,"code":…}}`.
    OpenAi,
}
