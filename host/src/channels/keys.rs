//! Every Redis key and channel name in one place, with the hash tags Redis Cluster needs: the
//! task stream and its dead letters share the `{tasks}` slot (a dead letter is written and its
//! task acknowledged in one transaction), and a session's state and replay stream share the
//! `{session}` slot (one Lua script writes both).

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// Consumer group of the workers on the task stream.
pub const GROUP: &str = "workers";

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_string() }
    }

    pub fn tasks(&self) -> String {
        format!("{}:{{tasks}}", self.prefix)
    }

    pub fn dead_letters(&self) -> String {
        format!("{}:{{tasks}}:dead", self.prefix)
    }

    /// The result channel of one gateway.
    pub fn gateway_channel(&self, gateway: &str) -> String {
        format!("{}:out:{gateway}", self.prefix)
    }

    pub fn session_state(&self, session: &str) -> String {
        format!("{}:sess:{{{session}}}:state", self.prefix)
    }

    pub fn session_replay(&self, session: &str) -> String {
        format!("{}:sess:{{{session}}}:replay", self.prefix)
    }

    /// Set of the session ids in a room (for fan-out routing).
    pub fn room(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }

    /// An archive stream a router may send finals to.
    pub fn archive(&self, name: &str) -> String {
        format!("{}:archive:{name}", self.prefix)
    }

    /// The key every gateway signs resume tokens with when no auth secret is configured.
    pub fn resume_key(&self) -> String {
        format!("{}:resume-key", self.prefix)
    }

    /// Hash of which plugin version is live across the deployment (`active:KIND:NAME`), each
    /// kind's default (`default:KIND`) and rollback stacks (`previous:KIND:NAME`).
    pub fn plugins(&self) -> String {
        format!("{}:plugins", self.prefix)
    }

    /// A plugin component's bytes (or, with `ext = "toml"`, its manifest), for processes whose
    /// plugin directory lacks it.
    pub fn plugin_file(&self, label: &str, ext: &str) -> String {
        format!("{}:plugins:{ext}:{label}", self.prefix)
    }

    /// Sorted set of live workers, scored by last heartbeat (ms since the epoch).
    pub fn workers(&self) -> String {
        format!("{}:{{workers}}", self.prefix)
    }

    /// A worker's stats (JSON), in the workers' slot so that one MGET reads them all.
    pub fn worker_stats(&self, worker: &str) -> String {
        format!("{}:{{workers}}:{worker}", self.prefix)
    }
}
