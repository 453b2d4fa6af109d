"""RFC 8288 Link parsing, next-page rules and record extraction (pure, no network)."""

from __future__ import annotations

import contextlib

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.api.pagination import (
    EnvelopeError,
    ForeignNextLinkError,
    Link,
    LinkHeaderError,
    PageBody,
    PaginationError,
    RepeatedNextLinkError,
    UnexpectedBodyError,
    describe_errors,
    extract_page,
    extract_records,
    find_rel,
    next_page_url,
    origin_of,
    parse_link_header,
    same_origin,
)

BASE = "https://api.pj.nu/click-conversion"
REQUEST = "https://api.pj.nu/click-conversion/pixels/p1/events?from=2026-01-01T00:00:00Z&page=1"


def _only(links: list[Link]) -> Link:
    assert len(links) == 1, links
    return links[0]


# -- parse_link_header: targets ------------------------------------------------------------------


def test_absolute_target_is_kept_as_given() -> None:
    link = _only(parse_link_header('<https://api.pj.nu/click-conversion/x?page=2>; rel="next"', REQUEST))
    assert link.target == "https://api.pj.nu/click-conversion/x?page=2"
    assert link.rels == frozenset({"next"})


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("?page=2", "https://api.pj.nu/click-conversion/pixels/p1/events?page=2"),
        ("events?page=2", "https://api.pj.nu/click-conversion/pixels/p1/events?page=2"),
        ("../p2/events?page=2", "https://api.pj.nu/click-conversion/pixels/p2/events?page=2"),
        ("../../shops/7/pixels", "https://api.pj.nu/click-conversion/shops/7/pixels"),
        ("/click-conversion/pixels/p1/events?page=3", "https://api.pj.nu/click-conversion/pixels/p1/events?page=3"),
        ("//api.pj.nu/other", "https://api.pj.nu/other"),
    ],
)
def test_relative_target_is_resolved_against_the_request_url(reference: str, expected: str) -> None:
    link = _only(parse_link_header(f'<{reference}>; rel="next"', REQUEST))
    assert link.target == expected


@pytest.mark.parametrize(
    "header",
    [
        '<https://api.pj.nu/x?a=1,2;3>; rel="next"',
        "<https://api.pj.nu/x?a=1,2;3>;rel=next",
    ],
)
def test_commas_and_semicolons_inside_angle_brackets_belong_to_the_target(header: str) -> None:
    link = _only(parse_link_header(header, REQUEST))
    assert link.target == "https://api.pj.nu/x?a=1,2;3"
    assert link.rels == frozenset({"next"})


def test_whitespace_inside_angle_brackets_is_trimmed() -> None:
    link = _only(parse_link_header('< https://api.pj.nu/x?page=2 >; rel="next"', REQUEST))
    assert link.target == "https://api.pj.nu/x?page=2"


# -- parse_link_header: rels ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel_param",
    ['rel="next"', 'rel="NEXT"', "rel=next", "rel=NeXt", 'REL="next"', 'Rel = "next"', "rel = next"],
)
def test_rel_tokens_in_any_case_and_quoting_are_read(rel_param: str) -> None:
    link = _only(parse_link_header(f"<https://api.pj.nu/x?page=2>; {rel_param}", REQUEST))
    assert link.rels == frozenset({"next"})
    assert find_rel([link], "next") == "https://api.pj.nu/x?page=2"


def test_rel_next_last_is_followed() -> None:
    links = parse_link_header('<https://api.pj.nu/x?page=9>; rel="next last"', REQUEST)
    assert _only(links).rels == frozenset({"next", "last"})
    assert find_rel(links, "next") == "https://api.pj.nu/x?page=9"
    assert find_rel(links, "last") == "https://api.pj.nu/x?page=9"
    assert next_page_url('<https://api.pj.nu/x?page=9>; rel="next last"', REQUEST, BASE) == (
        "https://api.pj.nu/x?page=9"
    )


def test_multi_valued_rel_with_extra_whitespace_gives_each_type() -> None:
    link = _only(parse_link_header('<https://api.pj.nu/x>; rel="  prev\tNEXT   first "', REQUEST))
    assert link.rels == frozenset({"prev", "next", "first"})


def test_find_rel_is_case_insensitive_in_the_asked_relation() -> None:
    links = parse_link_header('<https://api.pj.nu/x>; rel="next"', REQUEST)
    assert find_rel(links, "NEXT") == "https://api.pj.nu/x"
    assert find_rel(links, "prev") is None


def test_only_the_first_rel_parameter_counts() -> None:
    link = _only(parse_link_header('<https://api.pj.nu/x>; rel="prev"; rel="next"', REQUEST))
    assert link.rels == frozenset({"prev"})


def test_link_without_rel_has_no_relations() -> None:
    link = _only(parse_link_header('<https://api.pj.nu/x>; title="no rel"', REQUEST))
    assert link.rels == frozenset()
    assert find_rel([link], "next") is None


# -- parse_link_header: params and lists ---------------------------------------------------------


def test_quoted_params_may_hold_commas_semicolons_and_escapes() -> None:
    header = (
        '<https://api.pj.nu/x?page=2>; title="a, b; c \\"d\\""; rel="next", '
        '<https://api.pj.nu/x?page=1>; rel="prev"; title="p"'
    )
    links = parse_link_header(header, REQUEST)
    assert [link.target for link in links] == ["https://api.pj.nu/x?page=2", "https://api.pj.nu/x?page=1"]
    assert links[0].params["title"] == 'a, b; c "d"'
    assert links[0].rels == frozenset({"next"})
    assert links[1].rels == frozenset({"prev"})


def test_extra_params_are_kept_with_lower_cased_names() -> None:
    header = "<https://api.pj.nu/x>; rel=next; TITLE*=UTF-8'sv'%e2%82%ac%20sida; type=\"application/json\"; hreflang=sv"
    link = _only(parse_link_header(header, REQUEST))
    assert link.rels == frozenset({"next"})
    assert link.params == {
        "title*": "UTF-8'sv'%e2%82%ac%20sida",
        "type": "application/json",
        "hreflang": "sv",
    }


def test_param_without_value_is_kept_empty() -> None:
    link = _only(parse_link_header("<https://api.pj.nu/x>; rel=next; crossorigin", REQUEST))
    assert link.params == {"crossorigin": ""}


def test_several_links_in_one_header_are_all_read_in_order() -> None:
    header = (
        '<https://api.pj.nu/x?page=1>; rel="first", <https://api.pj.nu/x?page=2>; rel="prev",'
        '<https://api.pj.nu/x?page=4>; rel="next",<https://api.pj.nu/x?page=9>; rel="last"'
    )
    links = parse_link_header(header, REQUEST)
    assert [sorted(link.rels) for link in links] == [["first"], ["prev"], ["next"], ["last"]]
    assert find_rel(links, "next") == "https://api.pj.nu/x?page=4"
    assert find_rel(links, "last") == "https://api.pj.nu/x?page=9"


def test_empty_elements_and_whitespace_are_tolerated() -> None:
    header = ' ,\t, <https://api.pj.nu/x?page=2> ;\trel = "next" ; ; ,, <https://api.pj.nu/x?page=1>;rel=prev , '
    links = parse_link_header(header, REQUEST)
    assert [link.target for link in links] == ["https://api.pj.nu/x?page=2", "https://api.pj.nu/x?page=1"]
    assert links[0].rels == frozenset({"next"})
    assert links[1].rels == frozenset({"prev"})


@pytest.mark.parametrize("header", ["", "   ", ",", " , ,\t"])
def test_header_with_no_elements_gives_no_links(header: str) -> None:
    assert parse_link_header(header, REQUEST) == []


@pytest.mark.parametrize(
    "header",
    [
        "<no-closing-bracket; rel=next",
        '<https://api.pj.nu/x>; rel="next',
        '<https://api.pj.nu/x>; rel="next\\',
        "https://api.pj.nu/x; rel=next",
        "garbage",
        "<https://api.pj.nu/x> rel=next",
        "<https://api.pj.nu/x>; rel=",
        "<https://api.pj.nu/x>; =next",
        "<https://api.pj.nu/x>; rel=next <https://api.pj.nu/y>; rel=prev",
        "<http://[::1>; rel=next",
    ],
)
def test_malformed_header_raises_link_header_error(header: str) -> None:
    with pytest.raises(LinkHeaderError):
        parse_link_header(header, REQUEST)
    with pytest.raises(LinkHeaderError):
        next_page_url(header, REQUEST, BASE)


@pytest.mark.parametrize(
    "header",
    ['<https://api.pj.nu/x?page=2>; rel="next last"', '<https://api.pj.nu/x?page=2>; rel="NEXT"'],
)
def test_requests_links_loses_the_next_page_but_ours_does_not(header: str) -> None:
    response = requests.Response()
    response.headers["Link"] = header
    assert "next" not in response.links  # the reason pagination.py exists
    assert find_rel(parse_link_header(header, REQUEST), "next") == "https://api.pj.nu/x?page=2"


# -- next_page_url -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   "])
def test_no_link_header_means_last_page(header: str | None) -> None:
    assert next_page_url(header, REQUEST, BASE) is None


def test_header_without_next_means_last_page() -> None:
    header = '<https://api.pj.nu/x?page=1>; rel="first", <https://api.pj.nu/x?page=3>; rel="prev"'
    assert next_page_url(header, REQUEST, BASE) is None


def test_relative_next_is_returned_resolved() -> None:
    assert next_page_url("<?page=2>; rel=next", REQUEST, BASE) == (
        "https://api.pj.nu/click-conversion/pixels/p1/events?page=2"
    )


def test_next_on_same_origin_with_explicit_default_port_is_followed() -> None:
    target = "https://API.PJ.NU:443/x?page=2"
    assert next_page_url(f"<{target}>; rel=next", REQUEST, BASE) == target  # followed as given


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/x?page=2",
        "//evil.example/x?page=2",
        "https://api.pj.nu.evil.example/x",
        "https://api.pj.nu:8443/x?page=2",
        "http://api.pj.nu/x?page=2",
        "https://user@evil.example/x",
        "https://api.pj.nu:99999/x",
        "https://api.pj.nu:notaport/x",
    ],
)
def test_next_link_to_another_origin_is_refused(target: str) -> None:
    with pytest.raises(ForeignNextLinkError):
        next_page_url(f'<{target}>; rel="next"', REQUEST, BASE)


def test_foreign_next_link_is_refused_even_as_second_rel() -> None:
    with pytest.raises(ForeignNextLinkError):
        next_page_url('<https://evil.example/x>; rel="last NEXT"', REQUEST, BASE)


def test_foreign_links_with_other_rels_are_ignored() -> None:
    header = '<https://evil.example/x>; rel="last", <https://api.pj.nu/x?page=2>; rel="next"'
    assert next_page_url(header, REQUEST, BASE) == "https://api.pj.nu/x?page=2"


def test_repeated_next_url_is_refused() -> None:
    seen = [REQUEST, "https://api.pj.nu/x?page=2"]
    with pytest.raises(RepeatedNextLinkError):
        next_page_url('<https://api.pj.nu/x?page=2>; rel="next"', REQUEST, BASE, seen_urls=seen)


def test_next_pointing_at_the_request_itself_is_refused() -> None:
    with pytest.raises(RepeatedNextLinkError):
        next_page_url("<>; rel=next", REQUEST, BASE, seen_urls=iter([REQUEST]))


def test_unseen_next_url_is_followed_when_others_were_seen() -> None:
    seen = [REQUEST, "https://api.pj.nu/x?page=2"]
    assert next_page_url("<https://api.pj.nu/x?page=3>; rel=next", REQUEST, BASE, seen) == "https://api.pj.nu/x?page=3"


def test_pagination_errors_are_value_errors() -> None:
    for cls in (LinkHeaderError, ForeignNextLinkError, RepeatedNextLinkError, UnexpectedBodyError):
        assert issubclass(cls, PaginationError)
        assert issubclass(cls, ValueError)


def test_origin_fills_in_default_ports_and_lower_cases() -> None:
    assert origin_of("HTTPS://API.PJ.NU/x") == ("https", "api.pj.nu", 443)
    assert origin_of("http://localhost/x") == ("http", "localhost", 80)
    assert origin_of("http://127.0.0.1:8080/x") == ("http", "127.0.0.1", 8080)
    assert same_origin("https://api.pj.nu/a", "https://api.pj.nu:443/b")
    assert not same_origin("https://api.pj.nu/a", "http://api.pj.nu/a")
    assert not same_origin("https://api.pj.nu/a", "https://api.pj.nu:444/a")


# -- extract_records -----------------------------------------------------------------------------


def test_bare_array_is_the_records() -> None:
    body = [{"id": 1}, {"id": 2}]
    assert extract_records(body) is body


def test_empty_bare_array_is_no_records() -> None:
    assert extract_records([]) == []


def test_data_member_holds_the_records() -> None:
    assert extract_records({"data": [{"id": 1}], "meta": {"total": 1}, "links": ["x", "y"]}) == [{"id": 1}]


@pytest.mark.parametrize("key", ["items", "results", "records", "events", "pixels", "content"])
def test_known_wrapper_keys_hold_the_records(key: str) -> None:
    assert extract_records({key: [{"id": 7}], "other": ["not", "this"]}) == [{"id": 7}]


def test_data_wins_over_other_known_keys() -> None:
    assert extract_records({"items": [1], "data": [2]}) == [2]


def test_single_list_member_under_an_unknown_key_is_used() -> None:
    assert extract_records({"conversions": [{"id": 1}], "count": 1, "next": None}) == [{"id": 1}]


def test_explicit_records_key_is_used() -> None:
    assert extract_records({"data": [1], "rows": [2]}, records_key="rows") == [2]


def test_explicit_records_key_without_a_list_is_an_error() -> None:
    with pytest.raises(UnexpectedBodyError, match="'rows'"):
        extract_records({"data": [1]}, records_key="rows")
    with pytest.raises(UnexpectedBodyError, match="'rows'"):
        extract_records({"rows": {"not": "a list"}}, records_key="rows")


def test_several_unknown_lists_are_ambiguous() -> None:
    with pytest.raises(UnexpectedBodyError, match="alpha, beta"):
        extract_records({"beta": [1], "alpha": [2]})


def test_object_without_a_list_is_an_error() -> None:
    with pytest.raises(UnexpectedBodyError, match="could not find"):
        extract_records({"title": "x", "count": 3})
    with pytest.raises(UnexpectedBodyError, match="none"):
        extract_records({})


@pytest.mark.parametrize("body", [None, "text", 3, 1.5, True])
def test_scalar_body_is_an_error(body: object) -> None:
    with pytest.raises(UnexpectedBodyError, match=type(body).__name__):
        extract_records(body)


# -- envelopes (issue #12, item 7) ----------------------------------------------------------------


@pytest.mark.parametrize("body", [{"events": None}, {"data": None}, {"data": None, "meta": {"count": 0}}])
def test_a_null_list_is_an_empty_page(body: dict[str, object]) -> None:
    assert extract_records(body) == []
    assert extract_page(body) == PageBody([], [])


def test_a_null_list_under_the_given_key_is_an_empty_page() -> None:
    assert extract_records({"rows": None}, records_key="rows") == []


@pytest.mark.parametrize(
    "body",
    [
        {"data": None, "errors": [{"code": "upstream_error", "message": "Event store unavailable"}]},
        {"errors": [{"code": "upstream_error", "message": "Event store unavailable"}]},
        {"events": None, "error": {"message": "Event store unavailable"}},
    ],
)
def test_errors_without_data_are_an_error_with_the_errors_in_the_message(body: dict[str, object]) -> None:
    with pytest.raises(EnvelopeError, match="Event store unavailable") as caught:
        extract_records(body)
    assert isinstance(caught.value, PaginationError)
    assert caught.value.errors == (body.get("errors") or [body["error"]])


def test_data_with_errors_gives_both() -> None:
    errors = [{"code": "partial_result", "message": "Some events could not be enriched"}]
    page = extract_page({"data": [{"id": 1}], "meta": {"count": 1}, "errors": errors})
    assert page == PageBody([{"id": 1}], errors)
    records, returned = page
    assert (records, returned) == ([{"id": 1}], errors)
    assert extract_records({"data": [{"id": 1}], "errors": errors}) == [{"id": 1}]


def test_an_empty_list_with_errors_is_an_empty_page_with_errors() -> None:
    assert extract_page({"data": [], "errors": ["busy"]}) == PageBody([], ["busy"])


def test_empty_errors_are_no_errors() -> None:
    assert extract_page({"data": [1], "errors": []}) == PageBody([1], [])
    assert extract_page({"data": [1], "errors": None}) == PageBody([1], [])


@pytest.mark.parametrize("member", ["data", "payload", "result"])
@pytest.mark.parametrize("inner", ["events", "pixels", "items"])
def test_one_level_of_nesting_is_read(member: str, inner: str) -> None:
    body = {member: {inner: [{"id": 1}]}, "meta": {"count": 1}}
    assert extract_records(body) == [{"id": 1}]


def test_a_nested_null_list_is_an_empty_page() -> None:
    assert extract_records({"data": {"events": None}, "meta": {"count": 0}}) == []


def test_nesting_under_the_given_key_is_read() -> None:
    assert extract_records({"data": {"rows": [2]}}, records_key="rows") == [2]


def test_two_nested_lists_are_ambiguous() -> None:
    with pytest.raises(UnexpectedBodyError):
        extract_records({"a": {"events": [1]}, "b": {"events": [2]}})


def test_deeper_nesting_is_not_searched() -> None:
    with pytest.raises(UnexpectedBodyError, match="could not find"):
        extract_records({"data": {"inner": {"events": [1]}}})


def test_a_nested_list_wins_over_a_nested_null() -> None:
    assert extract_records({"data": {"events": [1]}, "meta": {"items": None}}) == [1]


def test_a_nested_error_object_is_not_searched_for_records() -> None:
    with pytest.raises(EnvelopeError, match="busy"):
        extract_records({"data": None, "error": {"message": "busy", "items": [1]}})


_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["data", "events", "errors", "error", "meta", "x"]), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(_ANY_JSON)
def test_any_body_gives_a_page_or_a_pagination_error(body: object) -> None:
    try:
        page = extract_page(body)
    except PaginationError:
        return
    assert isinstance(page.records, list)
    assert isinstance(page.errors, list)


def test_describe_errors_reads_messages_and_is_bounded() -> None:
    assert describe_errors([{"code": "c", "message": "m"}, {"code": "only-code"}, "text", {"x": 1}]) == (
        'm; only-code; text; {"x": 1}'
    )
    assert len(describe_errors(["x" * 1000])) == 500


# -- properties ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_header_text_raises_only_pagination_errors(header: str) -> None:
    try:
        links = parse_link_header(header, REQUEST)
    except PaginationError:
        pass
    else:
        assert all(isinstance(link, Link) for link in links)
    with contextlib.suppress(PaginationError):
        next_page_url(header, REQUEST, BASE, seen_urls=[REQUEST])


_LINKISH = st.text(alphabet=st.sampled_from('<>;,"= \t\\relnxtRELNXT/:?abc'), max_size=40)


@settings(max_examples=200, deadline=None)
@given(_LINKISH)
def test_link_shaped_header_text_raises_only_pagination_errors(header: str) -> None:
    with contextlib.suppress(PaginationError):
        next_page_url(header, REQUEST, BASE)


_SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=8)
_QUERY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=&,;%-", max_size=12)
_REL = st.sampled_from(["next", "prev", "first", "last", "self", "alternate", "x-custom"])


@st.composite
def _links(draw: st.DrawFn) -> tuple[str, frozenset[str], str]:
    path = "/".join(draw(st.lists(_SEGMENT, min_size=1, max_size=4)))
    query = draw(_QUERY)
    url = f"https://api.pj.nu/{path}" + (f"?{query}" if query else "")
    rels = draw(st.lists(_REL, min_size=1, max_size=3, unique=True))
    cased = [draw(st.sampled_from([rel, rel.upper(), rel.title()])) for rel in rels]
    rel_param = f"rel={cased[0]}" if len(cased) == 1 and draw(st.booleans()) else 'rel="' + " ".join(cased) + '"'
    title = draw(st.text(alphabet="abc ,;=<>", max_size=10))
    extra = draw(st.sampled_from(["", f'; title="{title}"', '; type="application/json"']))
    return f"<{url}>; {rel_param}{extra}", frozenset(rels), url


@settings(max_examples=200, deadline=None)
@given(st.lists(_links(), min_size=1, max_size=5), st.sampled_from([",", ", ", " ,\t", ",,"]))
def test_generated_header_round_trips_targets_and_rels(
    links: list[tuple[str, frozenset[str], str]], separator: str
) -> None:
    header = separator.join(text for text, _, _ in links)
    parsed = parse_link_header(header, REQUEST)
    assert [(link.target, link.rels) for link in parsed] == [(url, rels) for _, rels, url in links]
    expected_next = next((url for _, rels, url in links if "next" in rels), None)
    assert find_rel(parsed, "next") == expected_next
    assert next_page_url(header, REQUEST, BASE) == expected_next
