//! Routing: network + longest path prefix picks one pipeline endpoint.

/// One routable entry on a network.
#[derive(Debug, Clone)]
pub struct Route {
    /// Normalised prefix: "/" or "/x/y" (no trailing slash).
    pub prefix: String,
    pub pipeline: usize,
    pub endpoint: usize,
}

/// The result of routing a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    pub pipeline: usize,
    pub endpoint: usize,
    /// Length of the matched prefix ("/" counts as 0: nothing stripped).
    pub prefix_len: usize,
}

/// Sort so the longest prefix is tried first.
pub(crate) fn sort_routes(routes: &mut [Route]) {
    routes.sort_by(|a, b| b.prefix.len().cmp(&a.prefix.len()).then(a.prefix.cmp(&b.prefix)));
}

/// Longest-prefix match on whole segments: "/api" matches "/api" and
/// "/api/x" but not "/apix".
pub(crate) fn match_route(routes: &[Route], path: &str) -> Option<RouteMatch> {
    for r in routes {
        if r.prefix == "/" {
            return Some(RouteMatch { pipeline: r.pipeline, endpoint: r.endpoint, prefix_len: 0 });
        }
        if let Some(rest) = path.strip_prefix(r.prefix.as_str()) {
            if rest.is_empty() || rest.starts_with('/') {
                return Some(RouteMatch { pipeline: r.pipeline, endpoint: r.endpoint, prefix_len: r.prefix.len() });
            }
        }
    }
    None
}

/// The path as seen behind the endpoint: prefix stripped, always starting with "/".
pub fn route_path<'a>(path: &'a str, m: &RouteMatch) -> &'a str {
    let rest = &path[m.prefix_len.min(path.len())..];
    if rest.is_empty() {
        "/"
    } else {
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        let mut r = vec![
            Route { prefix: "/".into(), pipeline: 0, endpoint: 0 },
            Route { prefix: "/api".into(), pipeline: 1, endpoint: 1 },
            Route { prefix: "/api/v2".into(), pipeline: 2, endpoint: 2 },
        ];
        sort_routes(&mut r);
        r
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let r = routes();
        assert_eq!(match_route(&r, "/api/v2/x").unwrap().pipeline, 2);
        assert_eq!(match_route(&r, "/api/v2").unwrap().pipeline, 2);
        assert_eq!(match_route(&r, "/api/v3").unwrap().pipeline, 1);
        assert_eq!(match_route(&r, "/apix").unwrap().pipeline, 0);
        let m = match_route(&r, "/api/v2/x").unwrap();
        assert_eq!(route_path("/api/v2/x", &m), "/x");
        let m = match_route(&r, "/api").unwrap();
        assert_eq!(route_path("/api", &m), "/");
    }

    #[test]
    fn no_root_route_means_no_match() {
        let r = vec![Route { prefix: "/a".into(), pipeline: 0, endpoint: 0 }];
        assert!(match_route(&r, "/b").is_none());
    }
}
