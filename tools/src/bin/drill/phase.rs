//! The phases of the drill's login load, in order: what each does to the system and its name in
//! the report. Its own module, so that the load (which records the phase of every login) and the
//! report (which groups by it) both depend on it and not on each other.

/// The phases logins are sent in, in order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Baseline,
    DbDown,
    DbBack,
    WechatSlow,
    WechatDown,
    WechatBack,
    SlowClients,
}

impl Phase {
    /// Indexed by `phase as usize`.
    pub const ALL: [Phase; 7] = [
        Phase::Baseline,
        Phase::DbDown,
        Phase::DbBack,
        Phase::WechatSlow,
        Phase::WechatDown,
        Phase::WechatBack,
        Phase::SlowClients,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::DbDown => "db down",
            Phase::DbBack => "db back",
            Phase::WechatSlow => "wechat slow",
            Phase::WechatDown => "wechat down",
            Phase::WechatBack => "wechat back",
            Phase::SlowClients => "slow clients",
        }
    }

    /// What is done to the system during the phase.
    pub fn what(self) -> &'static str {
        match self {
            Phase::Baseline => "everything up",
            Phase::DbDown => "MariaDB stopped, held down, restarted",
            Phase::DbBack => "MariaDB answering again; wxlogin not restarted",
            Phase::WechatSlow => "mock-wechat answers after 3 s (WECHAT_TIMEOUT=2s)",
            Phase::WechatDown => "mock-wechat stopped (connection refused)",
            Phase::WechatBack => "mock-wechat normal again",
            Phase::SlowClients => "100 slow clients hold connections to nginx",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_indexed_by_their_discriminant() {
        for (i, phase) in Phase::ALL.iter().enumerate() {
            assert_eq!(*phase as usize, i);
        }
    }
}
