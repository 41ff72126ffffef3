//! Kong's `spec/fixtures/router_path_handling_tests.lua`, table-driven.
//!
//! v0 rows are the current fixture (v0 only; it includes the fix that makes
//! `/service/` + `/` + strip + `/` give `/service/`). v1 rows are the v1
//! expansions of the older fixture that still listed `path_handling`. Each
//! row runs end to end: a route with the row's path (or a host, for `nil`
//! rows) is matched against the request path, and the match length goes to
//! `upstream_path`.

mod common;

use common::*;
use gateway_config::PathHandling;
use gateway_router::upstream_path;

/// (service_path, route_path, strip_path values, request_path, expected)
type Row = (
    &'static str,
    Option<&'static str>,
    &'static [bool],
    &'static str,
    &'static str,
);

const B: &[bool] = &[false, true];
const F: &[bool] = &[false];
const T: &[bool] = &[true];

#[rustfmt::skip]
const V0: &[Row] = &[
    ("/",         Some("/"),       B, "/",          "/"),
    ("/",         Some("/"),       B, "/route",     "/route"),
    ("/",         Some("/"),       B, "/route/",    "/route/"),
    ("/",         Some("/"),       B, "/routereq",  "/routereq"),
    ("/",         Some("/"),       B, "/route/req", "/route/req"),
    // 5
    ("/",         Some("/route"),  F, "/route",     "/route"),
    ("/",         Some("/route"),  F, "/route/",    "/route/"),
    ("/",         Some("/route"),  F, "/routereq",  "/routereq"),
    ("/",         Some("/route"),  T, "/route",     "/"),
    ("/",         Some("/route"),  T, "/route/",    "/"),
    ("/",         Some("/route"),  T, "/routereq",  "/req"),
    // 11
    ("/",         Some("/route/"), F, "/route/",    "/route/"),
    ("/",         Some("/route/"), F, "/route/req", "/route/req"),
    ("/",         Some("/route/"), T, "/route/",    "/"),
    ("/",         Some("/route/"), T, "/route/req", "/req"),
    // 15
    ("/srv",      Some("/rou"),    F, "/roureq",    "/srv/roureq"),
    ("/srv",      Some("/rou"),    T, "/roureq",    "/srv/req"),
    // 19
    ("/srv/",     Some("/rou"),    F, "/rou",       "/srv/rou"),
    ("/srv/",     Some("/rou"),    T, "/rou",       "/srv"),
    // 22
    ("/service",  Some("/"),       B, "/",          "/service"),
    ("/service",  Some("/"),       B, "/route",     "/service/route"),
    ("/service",  Some("/"),       B, "/route/",    "/service/route/"),
    // 27
    ("/service",  Some("/"),       B, "/routereq",  "/service/routereq"),
    ("/service",  Some("/"),       B, "/route/req", "/service/route/req"),
    // 31
    ("/service",  Some("/route"),  F, "/route",     "/service/route"),
    ("/service",  Some("/route"),  F, "/route/",    "/service/route/"),
    ("/service",  Some("/route"),  F, "/routereq",  "/service/routereq"),
    ("/service",  Some("/route"),  T, "/route",     "/service"),
    ("/service",  Some("/route"),  T, "/route/",    "/service/"),
    ("/service",  Some("/route"),  T, "/routereq",  "/service/req"),
    // 41
    ("/service",  Some("/route/"), F, "/route/",    "/service/route/"),
    ("/service",  Some("/route/"), F, "/route/req", "/service/route/req"),
    ("/service",  Some("/route/"), T, "/route/",    "/service/"),
    ("/service",  Some("/route/"), T, "/route/req", "/service/req"),
    // 49
    ("/service/", Some("/"),       B, "/route/",    "/service/route/"),
    ("/service/", Some("/"),       B, "/",          "/service/"),
    ("/service/", Some("/"),       B, "/route",     "/service/route"),
    ("/service/", Some("/"),       B, "/routereq",  "/service/routereq"),
    ("/service/", Some("/"),       B, "/route/req", "/service/route/req"),
    // 55
    ("/service/", Some("/route"),  F, "/route",     "/service/route"),
    ("/service/", Some("/route"),  F, "/route/",    "/service/route/"),
    ("/service/", Some("/route"),  F, "/routereq",  "/service/routereq"),
    ("/service/", Some("/route"),  T, "/route",     "/service"),
    ("/service/", Some("/route"),  T, "/route/",    "/service/"),
    ("/service/", Some("/route"),  T, "/routereq",  "/service/req"),
    // 62
    ("/service/", Some("/route/"), F, "/route/",    "/service/route/"),
    ("/service/", Some("/route/"), F, "/route/req", "/service/route/req"),
    ("/service/", Some("/route/"), T, "/route/",    "/service/"),
    ("/service/", Some("/route/"), T, "/route/req", "/service/req"),
    // 66: the following cases match on host (not path)
    ("/",         None,            B, "/",          "/"),
    ("/",         None,            B, "/route",     "/route"),
    ("/",         None,            B, "/route/",    "/route/"),
    // 69
    ("/service",  None,            B, "/",          "/service"),
    ("/service",  None,            B, "/route",     "/service/route"),
    ("/service",  None,            B, "/route/",    "/service/route/"),
    // 74
    ("/service/", None,            B, "/",          "/service/"),
    ("/service/", None,            B, "/route",     "/service/route"),
    ("/service/", None,            B, "/route/",    "/service/route/"),
];

/// The rows of the older fixture that apply to v1 (`"v1"` or
/// `{"v0", "v1"}`).
#[rustfmt::skip]
const V1: &[Row] = &[
    ("/",         Some("/"),       B, "/",          "/"),
    ("/",         Some("/"),       B, "/route",     "/route"),
    ("/",         Some("/"),       B, "/route/",    "/route/"),
    ("/",         Some("/"),       B, "/routereq",  "/routereq"),
    ("/",         Some("/"),       B, "/route/req", "/route/req"),
    // 5
    ("/",         Some("/route"),  F, "/route",     "/route"),
    ("/",         Some("/route"),  F, "/route/",    "/route/"),
    ("/",         Some("/route"),  F, "/routereq",  "/routereq"),
    ("/",         Some("/route"),  T, "/route",     "/"),
    ("/",         Some("/route"),  T, "/route/",    "/"),
    ("/",         Some("/route"),  T, "/routereq",  "/req"),
    // 11
    ("/",         Some("/route/"), F, "/route/",    "/route/"),
    ("/",         Some("/route/"), F, "/route/req", "/route/req"),
    ("/",         Some("/route/"), T, "/route/",    "/"),
    ("/",         Some("/route/"), T, "/route/req", "/req"),
    // 15
    ("/srv",      Some("/rou"),    F, "/roureq",    "/srvroureq"),
    ("/srv",      Some("/rou"),    T, "/roureq",    "/srvreq"),
    // 19
    ("/srv/",     Some("/rou"),    F, "/rou",       "/srv/rou"),
    ("/srv/",     Some("/rou"),    T, "/rou",       "/srv/"),
    // 22
    ("/service",  Some("/"),       B, "/",          "/service"),
    ("/service",  Some("/"),       B, "/route",     "/serviceroute"),
    ("/service",  Some("/"),       B, "/route/",    "/serviceroute/"),
    ("/service",  Some("/"),       B, "/routereq",  "/serviceroutereq"),
    ("/service",  Some("/"),       B, "/route/req", "/serviceroute/req"),
    // 31
    ("/service",  Some("/route"),  F, "/route",     "/serviceroute"),
    ("/service",  Some("/route"),  F, "/route/",    "/serviceroute/"),
    ("/service",  Some("/route"),  F, "/routereq",  "/serviceroutereq"),
    ("/service",  Some("/route"),  T, "/route",     "/service"),
    ("/service",  Some("/route"),  T, "/route/",    "/service/"),
    ("/service",  Some("/route"),  T, "/routereq",  "/servicereq"),
    // 41
    ("/service",  Some("/route/"), F, "/route/",    "/serviceroute/"),
    ("/service",  Some("/route/"), F, "/route/req", "/serviceroute/req"),
    ("/service",  Some("/route/"), T, "/route/",    "/service"),
    ("/service",  Some("/route/"), T, "/route/req", "/servicereq"),
    // 48
    ("/service/", Some("/"),       F, "/",          "/service/"),
    ("/service/", Some("/"),       T, "/",          "/service/"),
    ("/service/", Some("/"),       B, "/route/",    "/service/route/"),
    ("/service/", Some("/"),       B, "/route",     "/service/route"),
    ("/service/", Some("/"),       B, "/routereq",  "/service/routereq"),
    ("/service/", Some("/"),       B, "/route/req", "/service/route/req"),
    // 55
    ("/service/", Some("/route"),  F, "/route",     "/service/route"),
    ("/service/", Some("/route"),  F, "/route/",    "/service/route/"),
    ("/service/", Some("/route"),  F, "/routereq",  "/service/routereq"),
    ("/service/", Some("/route"),  T, "/route",     "/service/"),
    ("/service/", Some("/route"),  T, "/route/",    "/service/"),
    ("/service/", Some("/route"),  T, "/routereq",  "/service/req"),
    // 62
    ("/service/", Some("/route/"), F, "/route/",    "/service/route/"),
    ("/service/", Some("/route/"), F, "/route/req", "/service/route/req"),
    ("/service/", Some("/route/"), T, "/route/",    "/service/"),
    ("/service/", Some("/route/"), T, "/route/req", "/service/req"),
    // 67: the following cases match on host (not paths)
    ("/",         None,            B, "/",          "/"),
    ("/",         None,            B, "/route",     "/route"),
    ("/",         None,            B, "/route/",    "/route/"),
    // 70
    ("/service",  None,            B, "/",          "/service"),
    ("/service",  None,            B, "/route",     "/serviceroute"),
    ("/service",  None,            B, "/route/",    "/serviceroute/"),
    // 75
    ("/service/", None,            F, "/",          "/service/"),
    ("/service/", None,            T, "/",          "/service/"),
    ("/service/", None,            B, "/route",     "/service/route"),
    ("/service/", None,            B, "/route/",    "/service/route/"),
];

fn run(rows: &[Row], handling: PathHandling) -> usize {
    let mut n = 0;
    let mut failures = Vec::new();
    for (i, &(service, route_path, strips, request, expected)) in rows.iter().enumerate() {
        for &strip in strips {
            let rt = match route_path {
                Some(p) => route().paths(&[p]),
                None => route().hosts(&["localbin.test"]),
            };
            let r = router(&[rt]);
            let q = req("GET", request, Some("localbin.test"));
            let m = find_match(&r, &q).unwrap_or_else(|| panic!("row {i}: no match"));
            let got = upstream_path(Some(service), request, m.matched_path_len, strip, handling);
            if got != expected {
                failures.push(format!(
                    "row {i} {handling:?} service={service} route={route_path:?} \
                     strip={strip} req={request}: got {got}, want {expected}"
                ));
            }
            n += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    n
}

#[test]
fn kong_path_handling_v0() {
    assert_eq!(run(V0, PathHandling::V0), 82);
}

#[test]
fn kong_path_handling_v1() {
    assert_eq!(run(V1, PathHandling::V1), 82);
}

#[test]
fn service_path_none_is_root() {
    assert_eq!(upstream_path(None, "/a/b", 2, true, PathHandling::V0), "/b");
    assert_eq!(
        upstream_path(None, "/a/b", 2, false, PathHandling::V0),
        "/a/b"
    );
}

#[test]
fn regex_match_strips_the_matched_part() {
    // Kong spec "stripped paths #strip" / regex: the matched text is the
    // prefix that strip_path removes.
    let r = router(&[route().paths(&[r"~/users/\d+"])]);
    let q = req("GET", "/users/42/orders", None);
    let m = find_match(&r, &q).unwrap();
    assert_eq!(
        upstream_path(
            Some("/svc"),
            &q.path,
            m.matched_path_len,
            true,
            PathHandling::V0
        ),
        "/svc/orders"
    );
    // "strips the specified paths from the given uri if matching"
    let r = router(&[route().paths(&["/my-route", "/xx-route"])]);
    let q = req("GET", "/my-route/hello/world", None);
    let m = find_match(&r, &q).unwrap();
    assert_eq!(
        upstream_path(None, &q.path, m.matched_path_len, true, PathHandling::V0),
        "/hello/world"
    );
    // "strips if matched URI is plain (not a prefix)"
    let q = req("GET", "/my-route", None);
    let m = find_match(&r, &q).unwrap();
    assert_eq!(
        upstream_path(None, &q.path, m.matched_path_len, true, PathHandling::V0),
        "/"
    );
    // "allows url encoded paths if they are reserved characters"
    let r = router(&[route().paths(&["/endel%2Fst"])]);
    let q = req("GET", "/endel%2Fst", None);
    let m = find_match(&r, &q).unwrap();
    assert_eq!(
        upstream_path(None, &q.path, m.matched_path_len, false, PathHandling::V0),
        "/endel%2Fst"
    );
}
