//! Cases ported from Kong's `spec/01-unit/08-router_spec.lua`, with the
//! expectations Kong asserts for the `traditional_compatible` flavor (test
//! names quoted), plus one test per ordering and matching rule of
//! `docs/routing.md`. Route indices are 0-based here (Kong's `use_case[n]`
//! is our `n - 1`). Kong's header names `user_agent` are `user-agent` here.

mod common;

use common::*;
use gateway_config::Protocol;
use gateway_router::{Router, RouterError};

/// Kong's shared `use_case` table of the `select()` tests.
fn use_case() -> Vec<gateway_config::Route> {
    vec![
        // 1. host
        route().hosts(&["domain-1.org", "domain-2.org"]),
        // 2. method
        route().methods(&["TRACE"]),
        // 3. uri
        route().paths(&["/my-route"]),
        // 4. host + uri
        route()
            .paths(&["/route-4"])
            .hosts(&["domain-1.org", "domain-2.org"]),
        // 5. host + method
        route()
            .hosts(&["domain-1.org", "domain-2.org"])
            .methods(&["POST", "PUT", "PATCH"]),
        // 6. uri + method
        route()
            .methods(&["POST", "PUT", "PATCH"])
            .paths(&["/route-6"]),
        // 7. host + uri + method
        route()
            .hosts(&["domain-with-uri-1.org", "domain-with-uri-2.org"])
            .methods(&["POST", "PUT", "PATCH"])
            .paths(&["/my-route-uri"]),
        // 8. serviceless-route
        route().paths(&["/serviceless"]),
        // 9. headers (single)
        route().header("location", &["my-location-1", "my-location-2"]),
        // 10. headers (multiple)
        route()
            .header("location", &["my-location-1"])
            .header("version", &["v1", "v2"]),
        // 11. headers + uri
        route()
            .header("location", &["my-location-1", "my-location-2"])
            .paths(&["/headers-uri"]),
        // 12. host + headers + uri + method
        route()
            .hosts(&["domain-with-headers-1.org", "domain-with-headers-2.org"])
            .header("location", &["my-location-1", "my-location-2"])
            .methods(&["POST", "PUT", "PATCH"])
            .paths(&["/headers-host-uri-method"]),
        // 13. host + port
        route().hosts(&["domain-1.org:321", "domain-2.org"]),
        // 14. no "any-port" route
        route().hosts(&["domain-3.org:321"]),
        // 15. headers (regex)
        route().header(
            "user-agent",
            &[r"~*windows|linux|os\s+x\s*[\d\._]+|solaris|bsd"],
        ),
    ]
}

#[test]
fn select_host_method_uri_combinations() {
    let r = router(&use_case());
    // "[host]"
    assert_eq!(find(&r, &req("GET", "/", Some("domain-1.org"))), Some(0));
    // "[host] ignores default port"
    assert_eq!(find(&r, &req("GET", "/", Some("domain-1.org:80"))), Some(0));
    // "[host] matches specific port"
    assert_eq!(
        find(&r, &req("GET", "/", Some("domain-1.org:321"))),
        Some(12)
    );
    // "[host] matches specific port on port-only route"
    assert_eq!(
        find(&r, &req("GET", "/", Some("domain-3.org:321"))),
        Some(13)
    );
    // "[host] fails just because of port on port-only route"
    assert_eq!(find(&r, &req("GET", "/", Some("domain-3.org:123"))), None);
    // "[uri]"
    assert_eq!(
        find(&r, &req("GET", "/my-route", Some("domain.org"))),
        Some(2)
    );
    // "[uri + empty host]"
    assert_eq!(find(&r, &req("GET", "/my-route-uri", Some(""))), Some(2));
    // "[method]"
    assert_eq!(find(&r, &req("TRACE", "/", Some("domain.org"))), Some(1));
    // "[host + uri]"
    assert_eq!(
        find(&r, &req("GET", "/route-4", Some("domain-1.org"))),
        Some(3)
    );
    // "[host + method]"
    assert_eq!(find(&r, &req("POST", "/", Some("domain-1.org"))), Some(4));
    // "[uri + method]"
    assert_eq!(
        find(&r, &req("PUT", "/route-6", Some("domain.org"))),
        Some(5)
    );
    // "[host + uri + method]"
    assert_eq!(
        find(
            &r,
            &req("PUT", "/my-route-uri", Some("domain-with-uri-2.org"))
        ),
        Some(6)
    );
    // "[serviceless]"
    assert_eq!(find(&r, &req("GET", "/serviceless", None)), Some(7));
    // "[uri prefix]": matches when given [uri] is in request URI prefix
    assert_eq!(
        find(&r, &req("GET", "/my-route/some/path", Some("domain.org"))),
        Some(2)
    );
}

#[test]
fn select_headers() {
    let r = router(&use_case());
    let get = || req("GET", "/", None);
    // "single [headers] value"
    assert_eq!(
        find(&r, &get().header("location", "my-location-1")),
        Some(8)
    );
    assert_eq!(
        find(&r, &get().header("location", "my-location-2")),
        Some(8)
    );
    let two = get()
        .header("location", "my-location-3")
        .header("location", "my-location-2");
    assert_eq!(find(&r, &two), Some(8));
    assert_eq!(find(&r, &get().header("location", "my-location-3")), None);
    let none = get()
        .header("location", "my-location-3")
        .header("location", "foo");
    assert_eq!(find(&r, &none), None);
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
              Chrome/83.0.4103.116 Safari/537.36";
    assert_eq!(find(&r, &get().header("user-agent", ua)), Some(14));

    // "multiple [headers] values"
    let q = get()
        .header("location", "my-location-1")
        .header("version", "v1");
    assert_eq!(find(&r, &q), Some(9));
    let q = get()
        .header("location", "my-location-1")
        .header("version", "v2");
    assert_eq!(find(&r, &q), Some(9));
    let q = get()
        .header("location", "my-location-3")
        .header("location", "my-location-1")
        .header("version", "v2");
    assert_eq!(find(&r, &q), Some(9));
    // fallback to Route 9
    let q = get()
        .header("location", "my-location-3")
        .header("location", "my-location-2")
        .header("version", "v2");
    assert_eq!(find(&r, &q), Some(8));

    // "[headers + uri]"
    let q = req("GET", "/headers-uri", None).header("location", "my-location-2");
    assert_eq!(find(&r, &q), Some(10));
    // "[host + headers + uri + method]"
    let q = req(
        "PUT",
        "/headers-host-uri-method",
        Some("domain-with-headers-1.org"),
    )
    .header("location", "my-location-2");
    assert_eq!(find(&r, &q), Some(11));
}

#[test]
fn misses() {
    let r = router(&use_case());
    // "invalid [host]"
    assert_eq!(find(&r, &req("GET", "/", Some("domain-3.org"))), None);
    // "invalid host in [host + uri]"
    assert_eq!(
        find(&r, &req("GET", "/route-4", Some("domain-3.org"))),
        None
    );
    // "invalid method in [host + uri + method]"
    assert_eq!(
        find(&r, &req("GET", "/some-uri", Some("domain-with-uri-2.org"))),
        None
    );
    // "invalid uri in [host + uri + method]"
    assert_eq!(
        find(
            &r,
            &req("PUT", "/some-uri-foo", Some("domain-with-uri-2.org"))
        ),
        None
    );
    // "does not match when given [uri] is in URI but not in prefix"
    assert_eq!(
        find(
            &r,
            &req("GET", "/some-other-prefix/my-route", Some("domain.org"))
        ),
        None
    );
    // "invalid [headers]"
    let q = req("GET", "/", None).header("location", "invalid-location");
    assert_eq!(find(&r, &q), None);
    // "invalid headers in [headers + uri]"
    let q = req("GET", "/headers-uri", None).header("location", "invalid-location");
    assert_eq!(find(&r, &q), None);
}

#[test]
fn uri_prefix_ordering() {
    // "does not supersede another route with a longer [uri]"
    let r = router(&[
        route().paths(&["/my-route/hello"]),
        route().paths(&["/my-route"]),
    ]);
    let h = Some("domain.org");
    assert_eq!(find(&r, &req("GET", "/my-route/hello", h)), Some(0));
    assert_eq!(find(&r, &req("GET", "/my-route/hello/world", h)), Some(0));
    assert_eq!(find(&r, &req("GET", "/my-route", h)), Some(1));
    assert_eq!(find(&r, &req("GET", "/my-route/world", h)), Some(1));

    // "... while [methods] are also defined"
    let r = router(&[
        route()
            .methods(&["POST", "PUT", "GET"])
            .paths(&["/my-route"]),
        route()
            .methods(&["POST", "PUT", "GET"])
            .paths(&["/my-route/hello"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/my-route/hello", h)), Some(1));
    assert_eq!(find(&r, &req("GET", "/my-route/hello/world", h)), Some(1));
    assert_eq!(find(&r, &req("GET", "/my-route", h)), Some(0));
    assert_eq!(find(&r, &req("GET", "/my-route/world", h)), Some(0));

    // "... while [hosts] are also defined"
    let r = router(&[
        route().hosts(&["domain.org"]).paths(&["/my-route"]),
        route().hosts(&["domain.org"]).paths(&["/my-route/hello"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/my-route/hello", h)), Some(1));
    assert_eq!(find(&r, &req("GET", "/my-route/hello/world", h)), Some(1));
    assert_eq!(find(&r, &req("GET", "/my-route", h)), Some(0));
    assert_eq!(find(&r, &req("GET", "/my-route/world", h)), Some(0));

    // "... when a better [uri] match exists for another [host]"
    let r = router(&[
        route().hosts(&["example.com"]).paths(&["/my-route"]),
        route().hosts(&["example.com"]).paths(&["/my-route/hello"]),
        route()
            .hosts(&["example.net"])
            .paths(&["/my-route/hello/world"]),
    ]);
    let h = Some("example.com");
    assert_eq!(find(&r, &req("GET", "/my-route/hello/world", h)), Some(1));
    assert_eq!(
        find(&r, &req("GET", "/my-route/hello/world/and/goodnight", h)),
        Some(1)
    );

    // "only matches [uri prefix] as a prefix (anchored mode)"
    let r = router(&[
        route().paths(&["/something/my-route"]),
        route().hosts(&["example.com"]).paths(&["/my-route"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/something/my-route", h)), Some(0));
}

#[test]
fn uri_regex() {
    let h = Some("domain.org");
    // "matches with [uri regex]"
    let r = router(&[route().paths(&[r"~/users/\d+/profile"])]);
    assert_eq!(find(&r, &req("GET", "/users/123/profile", h)), Some(0));

    // "matches the right route when several ones have a [uri regex]"
    let r = router(&[
        route().paths(&[r"~/route/persons/\d{3}"]),
        route().paths(&[r"~/route/persons/\d{3}/following"]),
        route().paths(&[r"~/route/persons/\d{3}/[a-z]+"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/route/persons/456", h)), Some(0));

    // "matches a [uri regex] even if a [prefix uri] got a match"
    let r = router(&[
        route().paths(&["/route/persons"]),
        route().paths(&[r"~/route/persons/\d+/profile"]),
    ]);
    assert_eq!(
        find(&r, &req("GET", "/route/persons/123/profile", h)),
        Some(1)
    );

    // "matches a [uri regex] even if a [uri] got an exact match"
    let r = router(&[
        route().paths(&["/route/fixture"]),
        route().paths(&["~/route/(fixture)"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/route/fixture", h)), Some(1));

    // "matches a [uri regex + host] even if a [prefix uri] got a match"
    let r = router(&[
        route().hosts(&["route.com"]).paths(&["/pat"]),
        route()
            .hosts(&["route.com"])
            .paths(&["/path"])
            .methods(&["POST"]),
        route().hosts(&["route.com"]).paths(&["~/(path)"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/path", Some("route.com"))), Some(2));

    // "matches from the beginning of the request URI [uri regex]"
    let r = router(&[route().paths(&["~/prefix/[0-9]+"])]);
    assert_eq!(find(&r, &req("GET", "/prefix/123", h)), Some(0));
    assert_eq!(find(&r, &req("GET", "/extra/prefix/123", h)), None);
}

fn wildcard_base() -> Vec<gateway_config::Route> {
    vec![route().hosts(&["*.route.com"]), route().hosts(&["route.*"])]
}

#[test]
fn wildcard_hosts() {
    let r = router(&wildcard_base());
    // "matches leftmost wildcards"
    assert_eq!(find(&r, &req("GET", "/", Some("foo.route.com"))), Some(0));
    // "matches rightmost wildcards"
    assert_eq!(find(&r, &req("GET", "/", Some("route.org"))), Some(1));
    // "matches any port in request"
    assert_eq!(find(&r, &req("GET", "/", Some("route.org:123"))), Some(1));
    assert_eq!(
        find(&r, &req("GET", "/", Some("foo.route.com:123"))),
        Some(0)
    );
    // any number of leading labels
    assert_eq!(find(&r, &req("GET", "/", Some("a.b.c.route.com"))), Some(0));
    assert_eq!(find(&r, &req("GET", "/", Some("route.com"))), Some(1));
    assert_eq!(find(&r, &req("GET", "/", Some("notroute.com"))), None);

    // "matches port-specific routes"
    let mut uc = wildcard_base();
    uc.push(route().hosts(&["*.route.net:123"]));
    uc.push(route().hosts(&["route.*:123"]));
    let r = router(&uc);
    assert_eq!(
        find(&r, &req("GET", "/", Some("foo.route.net:123"))),
        Some(2)
    );
    assert_eq!(find(&r, &req("GET", "/", Some("foo.route.net:456"))), None);
    // "port-specific is higher priority" (Kong: by UUID luck; here: the
    // port-specific tie-break, which beats declaration order)
    assert_eq!(find(&r, &req("GET", "/", Some("route.org:123"))), Some(3));

    // "prefers port-specific even for http default port"
    let mut uc = wildcard_base();
    uc.push(route().hosts(&["route.*:80"]));
    let r = router(&uc);
    assert_eq!(find(&r, &req("GET", "/", Some("route.org:123"))), Some(1));
    assert_eq!(find(&r, &req("GET", "/", Some("route.org:80"))), Some(2));
    // Kong's traditional router maps an implicit port to 80; like Kong's
    // compat flavor we only see ports present in the Host header.
    assert_eq!(find(&r, &req("GET", "/", Some("route.org"))), Some(1));

    // "does not take precedence over a plain host"
    let mut uc = wildcard_base();
    uc.insert(0, route().hosts(&["plain.route.com"]));
    uc.push(route().hosts(&["route.com"]));
    let r = router(&uc);
    assert_eq!(find(&r, &req("GET", "/", Some("route.com"))), Some(3));
    assert_eq!(find(&r, &req("GET", "/", Some("route.org"))), Some(2));
    assert_eq!(find(&r, &req("GET", "/", Some("plain.route.com"))), Some(0));
    assert_eq!(find(&r, &req("GET", "/", Some("foo.route.com"))), Some(1));
}

#[test]
fn wildcard_hosts_with_paths_and_ports() {
    // "matches [wildcard host + path] even if a similar [plain host] exists"
    let uc = vec![
        route().hosts(&["*.route.com"]).paths(&["/path1"]),
        route().hosts(&["plain.route.com"]).paths(&["/path2"]),
    ];
    let r = router(&uc);
    assert_eq!(
        find(&r, &req("GET", "/path1", Some("plain.route.com"))),
        Some(0)
    );
    // "matches [plain host + path] even if a matching [wildcard host] exists"
    assert_eq!(
        find(&r, &req("GET", "/path2", Some("plain.route.com"))),
        Some(1)
    );

    // "submatch_weight [wildcard host port] > [wildcard host]"
    let r = router(&[
        route().hosts(&["route.*"]),
        route().hosts(&["route.*:80", "route.com.*"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/", Some("route.org:80"))), Some(1));

    // "matches a [wildcard host + port] even if a [wildcard host] matched"
    let r = router(&[
        route().hosts(&["route.*"]),
        route().hosts(&["route.*:123"]),
        route().hosts(&["route.*:80"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/", Some("route.org:123"))), Some(1));

    // "matches [wildcard/plain + uri + method]"
    let mut uc = wildcard_base();
    uc.push(
        route()
            .hosts(&["*.domain.com", "example.com"])
            .paths(&["/path"])
            .methods(&["GET", "TRACE"]),
    );
    let r = router(&uc);
    assert_eq!(
        find(&r, &req("POST", "/path", Some("foo.domain.com"))),
        None
    );
    assert_eq!(
        find(&r, &req("GET", "/path", Some("foo.domain.com"))),
        Some(2)
    );
    assert_eq!(
        find(&r, &req("TRACE", "/path", Some("example.com"))),
        Some(2)
    );

    // "[wildcard host] + [uri regex]"
    let r = router(&[
        route()
            .hosts(&["*.example.com"])
            .paths(&[r"~/users/\d+/profile"]),
        route().hosts(&["*.example.com"]).paths(&["/users"]),
    ]);
    let h = Some("test.example.com");
    assert_eq!(find(&r, &req("GET", "/users/123/profile", h)), Some(0));
    assert_eq!(find(&r, &req("GET", "/users", h)), Some(1));
}

#[test]
fn headers_rules() {
    // "evaluates Routes with more [headers] first"
    let r = router(&[
        route()
            .header("version", &["v1", "v2"])
            .header("user-agent", &["foo", "bar"]),
        route()
            .header("version", &["v1", "v2"])
            .header("user-agent", &["foo", "bar"])
            .header("location", &["east", "west"]),
    ]);
    let q = req("GET", "/", None)
        .header("version", "v1")
        .header("user-agent", "foo")
        .header("location", "north")
        .header("location", "west");
    assert_eq!(find(&r, &q), Some(1));

    // "matches values in a case-insensitive way"
    let r = router(&[
        route().header("user-agent", &["foo", "bar"]),
        route().header("user-agent", &["BAZ"]),
    ]);
    assert_eq!(
        find(&r, &req("GET", "/", None).header("user-agent", "FOO")),
        Some(0)
    );
    assert_eq!(
        find(&r, &req("GET", "/", None).header("user-agent", "baz")),
        Some(1)
    );

    // Regex values are case-insensitive and unanchored (Kong:
    // `any(lower(http.headers.x)) ~ lower(re)`).
    let r = router(&[route().header("x-tier", &["~*^gold-[0-9]+$"])]);
    let q = |v: &str| req("GET", "/", None).header("x-tier", v);
    assert_eq!(find(&r, &q("GOLD-12")), Some(0));
    assert_eq!(find(&r, &q("gold-x")), None);
    let r = router(&[route().header("x-tier", &["~*old"])]);
    assert_eq!(find(&r, &q("GOLD-12")), Some(0));
    // A header the request lacks never matches.
    assert_eq!(find(&r, &req("GET", "/", None)), None);
}

#[test]
fn edge_cases() {
    let uc: Vec<_> = use_case().into_iter().take(7).collect();
    // "[host] and [uri] have higher priority than [method]"
    let r = router(&uc);
    assert_eq!(find(&r, &req("TRACE", "/", Some("domain-2.org"))), Some(0));
    assert_eq!(
        find(&r, &req("TRACE", "/my-route", Some("domain.org"))),
        Some(2)
    );

    // "half [uri] and [host] match does not supersede another route"
    let r = router(&[
        route().hosts(&["host1.com"]).paths(&["/v1/path"]),
        route().hosts(&["host2.com"]).paths(&["/"]),
    ]);
    assert_eq!(
        find(&r, &req("GET", "/v1/path", Some("host1.com"))),
        Some(0)
    );
    assert_eq!(
        find(&r, &req("GET", "/v1/path", Some("host2.com"))),
        Some(1)
    );

    // "half [wildcard host] and [method] match does not supersede another route"
    let r = router(&[
        route().hosts(&["host.*"]).methods(&["GET"]),
        route().hosts(&["host.*"]).methods(&["POST"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/", Some("host.com"))), Some(0));
    assert_eq!(find(&r, &req("POST", "/", Some("host.com"))), Some(1));

    // "half [uri regex] and [method] match does not supersede another route"
    let r = router(&[
        route().methods(&["GET"]).paths(&[r"~/users/\d+/profile"]),
        route().methods(&["POST"]).paths(&[r"~/users/\d*/profile"]),
    ]);
    let h = Some("domain.org");
    assert_eq!(find(&r, &req("GET", "/users/123/profile", h)), Some(0));
    assert_eq!(find(&r, &req("POST", "/users/123/profile", h)), Some(1));

    // "[method] does not supersede [uri prefix]"
    let r = router(&[route().methods(&["GET"]), route().paths(&["/example"])]);
    assert_eq!(find(&r, &req("GET", "/example", h)), Some(1));
    assert_eq!(find(&r, &req("GET", "/example/status/200", h)), Some(1));

    // "[method] does not supersede [wildcard host]"
    let r = router(&[route().methods(&["GET"]), route().hosts(&["domain.*"])]);
    assert_eq!(find(&r, &req("GET", "/", Some("nothing.com"))), Some(0));
    assert_eq!(find(&r, &req("GET", "/", Some("domain.com"))), Some(1));

    // "does not supersede another route with a longer [uri prefix]": Kong
    // marks it traditional-only, but the per-length split makes it hold in
    // compat too: `/a/bb` (5) beats the `/a` (2) group of route 0.
    let r = router(&[
        route().paths(&["/a", "/bbbbbbb"]),
        route().paths(&["/a/bb"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/a/bb/foobar", h)), Some(1));
    assert_eq!(find(&r, &req("GET", "/bbbbbbb/x", h)), Some(0));

    // "root / [uri]": catch-all, does not supersede a longer path
    let mut uc2 = vec![route().paths(&["/"])];
    uc2.extend(use_case().into_iter().take(7));
    let r = router(&uc2);
    assert_eq!(find(&r, &req("GET", "/", h)), Some(0));
    assert_eq!(find(&r, &req("GET", "/my-route", h)), Some(3));
    assert_eq!(find(&r, &req("GET", "/my-route/hello/world", h)), Some(3));
    assert_eq!(find(&r, &req("GET", "/foobar/baz", h)), Some(0));

    // "multiple routes of same category with conflicting values"
    let mut uc3 = Vec::new();
    for _ in 0..5 {
        uc3.push(route().hosts(&["domain.org"]).paths(&["/my-uri"]));
    }
    uc3.push(route().hosts(&["domain.org"]).paths(&["/my-target-uri"]));
    let r = router(&uc3);
    assert_eq!(find(&r, &req("GET", "/my-target-uri", h)), Some(5));
    // ... and among identical ones, declaration order decides.
    assert_eq!(find(&r, &req("GET", "/my-uri", h)), Some(0));

    // "more [headers] has priority over longer [paths]"
    let r = router(&[
        route()
            .header("version", &["v1"])
            .paths(&["/my-route/hello"]),
        route()
            .header("version", &["v1"])
            .header("location", &["us-east"])
            .paths(&["/my-route"]),
    ]);
    let q = req("GET", "/my-route/hello", h)
        .header("version", "v1")
        .header("location", "us-east");
    assert_eq!(find(&r, &q), Some(1));
}

#[test]
fn benchmarks_from_kong_spec_shapes() {
    // "[method + uri + host]": many non-matching routes sharing path and
    // host, the target differs by method only.
    let n = 10_000;
    let mut uc: Vec<_> = (0..n - 1)
        .map(|_| {
            route()
                .hosts(&[&format!("domain-{n}.org")])
                .paths(&[&format!("/my-route-{n}")])
        })
        .collect();
    uc.push(
        route()
            .hosts(&[&format!("domain-{n}.org")])
            .methods(&["POST"])
            .paths(&[&format!("/my-route-{n}")]),
    );
    let r = router(&uc);
    let q = req(
        "POST",
        &format!("/my-route-{n}"),
        Some(&format!("domain-{n}.org")),
    );
    assert_eq!(find(&r, &q), Some(n - 1));

    // "plain [host]"
    let uc: Vec<_> = (1..=n)
        .map(|i| route().hosts(&[&format!("domain-{i}.org")]))
        .collect();
    let r = router(&uc);
    assert_eq!(
        find(&r, &req("GET", "/", Some(&format!("domain-{n}.org")))),
        Some(n - 1)
    );

    // "[headers] single key"
    let uc: Vec<_> = (1..=n)
        .map(|i| route().header("location", &[&format!("somewhere-{i}")]))
        .collect();
    let r = router(&uc);
    let q = req("GET", "/", None).header("location", &format!("somewhere-{n}"));
    assert_eq!(find(&r, &q), Some(n - 1));
}

// ---- One test per rule of docs/routing.md ----

#[test]
fn rule_match_weight_counts_fields() {
    // weight 2 (host + path) beats weight 1 with a much longer path
    let r = router(&[
        route().paths(&["/a/very/long/path/indeed"]),
        route().hosts(&["x.com"]).paths(&["/a"]),
    ]);
    let q = req("GET", "/a/very/long/path/indeed", Some("x.com"));
    assert_eq!(find(&r, &q), Some(1));
    // snis count as a field
    let r = router(&[
        route().paths(&["/a"]),
        route().paths(&["/a"]).snis(&["x.com"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/a", None).sni("x.com")), Some(1));
}

#[test]
fn rule_plain_hosts_beat_wildcards_at_equal_weight() {
    // route 0 has one wildcard among its hosts: not "plain only"
    let r = router(&[
        route()
            .hosts(&["a.x.com", "*.y.com"])
            .paths(&["/long/path"]),
        route().hosts(&["a.x.com"]).paths(&["/"]),
    ]);
    assert_eq!(
        find(&r, &req("GET", "/long/path", Some("a.x.com"))),
        Some(1)
    );
}

#[test]
fn rule_header_count() {
    let r = router(&[
        route().header("a", &["1"]).paths(&["/long/path"]),
        route()
            .header("a", &["1"])
            .header("b", &["2"])
            .paths(&["/"]),
    ]);
    let q = req("GET", "/long/path", None)
        .header("a", "1")
        .header("b", "2");
    assert_eq!(find(&r, &q), Some(1));
}

#[test]
fn rule_regex_beats_prefix_then_regex_priority() {
    let r = router(&[
        route().paths(&["/users/123/profile/x"]),
        route().paths(&[r"~/users/\d+"]).regex_priority(-5),
        route().paths(&[r"~/users/\d+/profile"]).regex_priority(3),
        route().paths(&[r"~/users/1"]).regex_priority(3),
    ]);
    let q = req("GET", "/users/123/profile/x", None);
    // 2 and 3 tie on regex_priority 3: declaration order.
    assert_eq!(find(&r, &q), Some(2));
    // regex_priority -5 still beats any prefix of the same weight
    assert_eq!(find(&r, &req("GET", "/users/9", None)), Some(1));
    assert_eq!(
        find_match(&r, &req("GET", "/users/123/profile/x", None)).map(|m| m.matched_path_len),
        Some("/users/123/profile".len())
    );
}

#[test]
fn rule_regex_priority_ignored_for_prefix_paths() {
    let r = router(&[
        route().paths(&["/a"]).regex_priority(100),
        route().paths(&["/a/b"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/a/b", None)), Some(1));
}

#[test]
fn rule_longest_prefix_and_declaration_order() {
    let r = router(&[
        route().paths(&["/a"]),
        route().paths(&["/a/b"]),
        route().paths(&["/a/b"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/a/b/c", None)), Some(1));
    assert_eq!(find(&r, &req("GET", "/a/c", None)), Some(0));
    // prefix matching is a plain string prefix, as in Kong
    assert_eq!(find(&r, &req("GET", "/abc", None)), Some(0));
}

#[test]
fn rule_port_specific_beats_declaration_order() {
    let r = router(&[
        route().hosts(&["a.com"]).paths(&["/x"]),
        route().hosts(&["a.com:8443"]).paths(&["/x"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/x", Some("a.com:8443"))), Some(1));
    assert_eq!(find(&r, &req("GET", "/x", Some("a.com"))), Some(0));
    assert_eq!(find(&r, &req("GET", "/x", Some("a.com:80"))), Some(0));
}

#[test]
fn rule_split_route_reports_the_path_that_matched() {
    let r = router(&[
        route().paths(&["/x", r"~/y/\d+", "/yy", r"~/y/1"]),
        route().paths(&["/y"]),
    ]);
    let m = find_match(&r, &req("GET", "/y/12/z", None)).unwrap();
    assert_eq!((m.route, m.matched_path_len), (0, 5));
    let m = find_match(&r, &req("GET", "/yy/z", None)).unwrap();
    assert_eq!((m.route, m.matched_path_len), (0, 3));
    let m = find_match(&r, &req("GET", "/y/z", None)).unwrap();
    assert_eq!((m.route, m.matched_path_len), (1, 2));
    // Within a regex group, the first declared regex that matches reports.
    let r = router(&[route().paths(&[r"~/y/\d", r"~/y/\d+"])]);
    let m = find_match(&r, &req("GET", "/y/123", None)).unwrap();
    assert_eq!(m.matched_path_len, 4);
    let r = router(&[route().paths(&[r"~/y/\d+", r"~/y/\d"])]);
    let m = find_match(&r, &req("GET", "/y/123", None)).unwrap();
    assert_eq!(m.matched_path_len, 6);
}

#[test]
fn rule_regex_is_anchored_at_start_only_and_grouped() {
    let r = router(&[route().paths(&["~/a|/b"])]);
    // Kong compiles `^/a|/b`, which also matches `/x/b`; we compile
    // `^(?:/a|/b)`.
    assert_eq!(find(&r, &req("GET", "/b/c", None)), Some(0));
    assert_eq!(find(&r, &req("GET", "/x/b", None)), None);
    let m = find_match(&r, &req("GET", "/a/zz", None)).unwrap();
    assert_eq!(m.matched_path_len, 2);
}

#[test]
fn rule_hosts_case_insensitive_and_port_handling() {
    let r = router(&[
        route().hosts(&["example.com"]),
        route().hosts(&["*.example.org:8080"]),
        route().hosts(&["[::1]"]),
    ]);
    assert_eq!(find(&r, &req("GET", "/", Some("EXAMPLE.Com"))), Some(0));
    assert_eq!(
        find(&r, &req("GET", "/", Some("Example.com:1234"))),
        Some(0)
    );
    assert_eq!(
        find(&r, &req("GET", "/", Some("A.Example.ORG:8080"))),
        Some(1)
    );
    assert_eq!(find(&r, &req("GET", "/", Some("a.example.org"))), None);
    assert_eq!(find(&r, &req("GET", "/", Some("a.example.org:80"))), None);
    assert_eq!(find(&r, &req("GET", "/", Some("[::1]:8000"))), Some(2));
    assert_eq!(find(&r, &req("GET", "/", None)), None);
}

#[test]
fn rule_odd_wildcards() {
    // Not `*.x` / `x.*` at a dot: still Kong's suffix / prefix tests.
    let r = router(&[route().hosts(&["*example.com"]), route().hosts(&["api*"])]);
    assert_eq!(find(&r, &req("GET", "/", Some("myexample.com"))), Some(0));
    assert_eq!(find(&r, &req("GET", "/", Some("apix.org"))), Some(1));
    assert_eq!(find(&r, &req("GET", "/", Some("xapi.org"))), None);
}

#[test]
fn rule_methods_exact() {
    let r = router(&[route().methods(&["PURGE"]), route().methods(&["GET"])]);
    assert_eq!(find(&r, &req("PURGE", "/", None)), Some(0));
    assert_eq!(find(&r, &req("GET", "/", None)), Some(1));
    assert_eq!(find(&r, &req("get", "/", None)), None);
    assert_eq!(find(&r, &req("POST", "/", None)), None);
}

#[test]
fn rule_snis_only_constrain_tls_requests() {
    let r = router(&[route().snis(&["a.com."]).paths(&["/"])]);
    assert_eq!(find(&r, &req("GET", "/", None).sni("a.com")), Some(0));
    assert_eq!(find(&r, &req("GET", "/", None).sni("A.COM")), Some(0));
    assert_eq!(find(&r, &req("GET", "/", None).sni("b.com")), None);
    // plain HTTP: no SNI, the condition does not apply (Kong #6425)
    assert_eq!(find(&r, &req("GET", "/", None)), Some(0));
}

#[test]
fn rule_protocols_are_not_matched() {
    // An https-only route matches a plain http request: the proxy answers
    // it with `https_redirect_status_code`, like Kong.
    let r = router(&[
        route().paths(&["/"]),
        route().paths(&["/secure"]).protocols(&[Protocol::Https]),
    ]);
    assert_eq!(find(&r, &req("GET", "/secure/x", None)), Some(1));
}

#[test]
fn rule_route_prefix_paths_are_normalized() {
    let r = router(&[route().paths(&["/caf%c3%a9/%7Euser/./x//"])]);
    // normalized to /caf%C3%A9/~user/x/
    let m = find_match(&r, &req("GET", "/caf%C3%A9/~user/x/y", None)).unwrap();
    assert_eq!(m.matched_path_len, "/caf%C3%A9/~user/x/".len());
    let r = router(&[route().paths(&["/café"])]);
    assert_eq!(find(&r, &req("GET", "/caf%C3%A9", None)), Some(0));
}

#[test]
fn empty_table_and_pathless_routes() {
    let r = Router::build(&[]).unwrap();
    assert_eq!(find(&r, &req("GET", "/", Some("a.com"))), None);
    let r = router(&[route()]);
    let m = find_match(&r, &req("DELETE", "/anything", Some("a.com"))).unwrap();
    assert_eq!((m.route, m.matched_path_len), (0, 0));
}

#[test]
fn build_errors_name_the_route() {
    let e = Router::build(&[
        route().paths(&["/ok"]),
        route().paths(&["/x", "~(unclosed"]),
    ])
    .unwrap_err();
    assert!(
        matches!(
            e,
            RouterError::InvalidRegex {
                route: 1,
                path: 1,
                ..
            }
        ),
        "{e}"
    );
    // `a)(b` is invalid alone, even though `^(?:a)(b)` would compile.
    let e = Router::build(&[route().paths(&["~a)(b"])]).unwrap_err();
    assert!(
        matches!(e, RouterError::InvalidRegex { route: 0, .. }),
        "{e}"
    );
    let e = Router::build(&[route().paths(&["/bad%zz"])]).unwrap_err();
    assert!(
        matches!(
            e,
            RouterError::InvalidPath {
                route: 0,
                path: 0,
                ..
            }
        ),
        "{e}"
    );
    let e = Router::build(&[route().header("bad name", &["x"])]).unwrap_err();
    assert!(
        matches!(e, RouterError::InvalidHeaderName { route: 0, .. }),
        "{e}"
    );
    let e = Router::build(&[route().header("x", &["~*("])]).unwrap_err();
    assert!(
        matches!(e, RouterError::InvalidHeaderRegex { route: 0, .. }),
        "{e}"
    );
    assert!(e.to_string().starts_with("routes[0].headers[\"x\"]"), "{e}");
}
