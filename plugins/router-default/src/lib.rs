//! Default Kiki router: owner always (partials dropped when the owner's socket is congested),
//! room fan-out when the session is in a room, and finals to an archive stream when configured.
//!
//! Operator config (`[plugins.config.default]` in kiki.toml, read through the host `config` import):
//! - `max_backlog` (u32, default 8): partials are not sent to the owner while more than this
//!   many results are queued on its socket. Finals are always sent.
//! - `archive` (string, unset by default): when set, finals also go to `archive(<name>)`.
//!
//! The backlog rule only concerns the owner (the only backlog the host reports); room members
//! receive partials and finals alike.

use kiki_plugin_sdk::{
    Config, CutKind, Destination, PluginError, RouteContext, Router, SessionOptions, Transcript, export_router,
};

/// Router settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    pub max_backlog: u32,
    pub archive: Option<String>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig { max_backlog: 8, archive: None }
    }
}

impl RouterConfig {
    pub fn from_config(config: &Config) -> Result<Self, PluginError> {
        let d = RouterConfig::default();
        Ok(RouterConfig { max_backlog: config.get_u32("max_backlog", d.max_backlog)?, archive: config.get("archive") })
    }
}

/// The routing decision, as plain Rust.
pub fn route_with(
    cfg: &RouterConfig,
    result: &Transcript,
    options: &SessionOptions,
    context: &RouteContext,
) -> Vec<Destination> {
    let mut out = Vec::new();
    let is_partial = result.kind == CutKind::Partial;
    if !(is_partial && context.owner_backlog > cfg.max_backlog) {
        out.push(Destination::Owner);
    }
    if options.room.as_deref().is_some_and(|r| !r.is_empty()) {
        let owner = options.session_id.as_str();
        for member in &context.room_members {
            if member.is_empty() || member == owner || member == &result.session_id {
                continue;
            }
            let d = Destination::Session(member.clone());
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    if !is_partial && let Some(name) = &cfg.archive {
        out.push(Destination::Archive(name.clone()));
    }
    out
}

/// The exported router.
pub struct DefaultRouter;

fn config() -> &'static RouterConfig {
    static CFG: std::sync::OnceLock<RouterConfig> = std::sync::OnceLock::new();
    CFG.get_or_init(|| {
        RouterConfig::from_config(&Config::host()).unwrap_or_else(|e| {
            kiki_plugin_sdk::warn!("router config ignored ({e}); using defaults");
            RouterConfig::default()
        })
    })
}

impl Router for DefaultRouter {
    fn route(result: Transcript, options: &SessionOptions, context: &RouteContext) -> Vec<Destination> {
        route_with(config(), &result, options, context)
    }
}

export_router!(DefaultRouter);

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(kind: CutKind) -> Transcript {
        Transcript {
            session_id: "me".into(),
            segment_id: 1,
            kind,
            text: "hi".into(),
            start_ms: 0,
            end_ms: 500,
            words: vec![],
            language: "en".into(),
        }
    }

    fn opts(room: Option<&str>) -> SessionOptions {
        SessionOptions {
            session_id: "me".into(),
            language: None,
            hotwords: vec![],
            room: room.map(String::from),
            extra: vec![],
        }
    }

    fn ctx(backlog: u32, members: &[&str]) -> RouteContext {
        RouteContext { owner_backlog: backlog, room_members: members.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn owner_only_by_default() {
        let c = RouterConfig::default();
        for k in [CutKind::Partial, CutKind::Final] {
            assert_eq!(route_with(&c, &tr(k), &opts(None), &ctx(0, &["x"])), vec![Destination::Owner]);
        }
    }

    #[test]
    fn congested_owner_drops_partials_not_finals() {
        let c = RouterConfig::default();
        assert_eq!(route_with(&c, &tr(CutKind::Partial), &opts(None), &ctx(8, &[])), vec![Destination::Owner]);
        assert!(route_with(&c, &tr(CutKind::Partial), &opts(None), &ctx(9, &[])).is_empty());
        assert_eq!(route_with(&c, &tr(CutKind::Final), &opts(None), &ctx(100, &[])), vec![Destination::Owner]);
        let c = RouterConfig { max_backlog: 0, archive: None };
        assert!(route_with(&c, &tr(CutKind::Partial), &opts(None), &ctx(1, &[])).is_empty());
    }

    #[test]
    fn room_fan_out_excludes_owner() {
        let c = RouterConfig::default();
        let got = route_with(&c, &tr(CutKind::Partial), &opts(Some("r1")), &ctx(0, &["a", "me", "b", "a"]));
        assert_eq!(got, vec![Destination::Owner, Destination::Session("a".into()), Destination::Session("b".into())]);
        // Congested owner: room members still get the partial.
        let got = route_with(&c, &tr(CutKind::Partial), &opts(Some("r1")), &ctx(50, &["a"]));
        assert_eq!(got, vec![Destination::Session("a".into())]);
    }

    #[test]
    fn archive_gets_finals_only() {
        let c = RouterConfig::from_config(&Config::from_pairs(&[("archive", "minutes")])).unwrap();
        assert_eq!(
            route_with(&c, &tr(CutKind::Final), &opts(None), &ctx(0, &[])),
            vec![Destination::Owner, Destination::Archive("minutes".into())]
        );
        assert_eq!(route_with(&c, &tr(CutKind::Partial), &opts(None), &ctx(0, &[])), vec![Destination::Owner]);
    }

    #[test]
    fn config_parsing() {
        assert_eq!(RouterConfig::from_config(&Config::default()).unwrap(), RouterConfig::default());
        let c = RouterConfig::from_config(&Config::from_pairs(&[("max_backlog", "3")])).unwrap();
        assert_eq!(c.max_backlog, 3);
        assert!(matches!(
            RouterConfig::from_config(&Config::from_pairs(&[("max_backlog", "lots")])),
            Err(PluginError::InvalidConfig(_))
        ));
    }
}
