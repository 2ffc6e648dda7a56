"""DNS wire format, the cheap way: queries encoded once, replies read by their header only.

Pure functions on bytes. dnspython encodes the queries; the hot path only patches the 2-byte ID
and reads the 12-byte header (plus the first TXT string of the answer when identifying the resolver).
"""

from __future__ import annotations

import struct

import dns.message
import dns.rcode
import dns.rdatatype

TXT = 16
_HEADER = struct.Struct("!HH")


def encode_query(qname: str, qtype: str) -> bytes:
    """The wire form of a query for `qname`/`qtype` with ID 0, RD set and no EDNS (as a stub sends)."""
    message = dns.message.make_query(qname, dns.rdatatype.from_text(qtype), use_edns=False)
    message.id = 0
    return message.to_wire()


def with_id(query: bytes, qid: int) -> bytes:
    """`query` with its ID replaced by `qid` (0..65535)."""
    return qid.to_bytes(2, "big") + query[2:]


def reply_header(reply: bytes) -> tuple[int, int]:
    """(ID, RCODE) of a reply; raises struct.error when it is shorter than a header."""
    qid, flags = _HEADER.unpack_from(reply)
    return qid, flags & 0x000F


def first_txt(reply: bytes, question_end: int) -> str:
    """The first character-string of the first answer record when it is a TXT, else "".

    `question_end` is the length of the query that was sent (header + question, no EDNS): the
    answer section of the reply starts there.
    """
    try:
        if reply[6:8] == b"\x00\x00":
            return ""
        offset = question_end
        while True:  # the owner name: a compression pointer or a sequence of labels
            length = reply[offset]
            if length >= 0xC0:
                offset += 2
                break
            offset += length + 1
            if length == 0:
                break
        rtype = int.from_bytes(reply[offset : offset + 2], "big")
        if rtype != TXT:
            return ""
        size = reply[offset + 10]
        return reply[offset + 11 : offset + 11 + size].decode("ascii", "replace")
    except IndexError:
        return ""


def rcode_name(rcode: int) -> str:
    """NOERROR, NXDOMAIN, REFUSED, ... for a numeric RCODE."""
    return dns.rcode.to_text(dns.rcode.Rcode(rcode))


def rcode_value(name: str) -> int:
    """The numeric RCODE of a name such as NXDOMAIN; raises ValueError for an unknown name."""
    try:
        return int(dns.rcode.from_text(name.upper()))
    except dns.rcode.UnknownRcode as exc:
        raise ValueError(f"unknown RCODE {name!r}") from exc
