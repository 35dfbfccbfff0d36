#!/usr/bin/python3
"""NTLM verifier for the test ground's second Dovecot (dovecot-ntlm): Cyrus SASL behind
Dovecot's winbind interface.

Dovecot 2.3 checks NTLM only through a helper process (auth_winbind_helper_path, normally
Samba's ntlm_auth) that speaks Squid's NTLMSSP helper protocol on stdin/stdout, one exchange at a
time:

    YR <base64 NEGOTIATE>     ->  TT <base64 CHALLENGE>
    KK <base64 AUTHENTICATE>  ->  AF <user>  |  NA <reason>
    (anything broken)         ->  BH <reason>

This helper does no NTLM itself: each exchange is a libsasl2 server connection running Cyrus
SASL's NTLM plugin (libntlm.so from libsasl2-modules), which makes the challenge and checks the
NTLMv2 response against the plaintext password in the sasldb beside this file (made by
saslpasswd2, realm testground.example). Options come from a getopt callback, so no Cyrus config
file is involved. ctypes, because Debian has no Python binding of libsasl2.

A YR always starts a new exchange (a client that gave up mid-way leaves its state behind).
Dovecot sends the lines of concurrent logins through this one process without an exchange id,
so two NTLM logins interleaved between YR and KK disturb each other (as with ntlm_auth).
"""

import base64
import ctypes
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SASLDB = os.path.join(HERE, "sasldb2").encode()
REALM = b"testground.example"
SERVICE = b"pop"

SASL_OK = 0
SASL_CONTINUE = 1
SASL_USERNAME = 0
SASL_CB_LIST_END = 0
SASL_CB_GETOPT = 1
SASL_CB_LOG = 2

OPTIONS = {
    b"pwcheck_method": b"auxprop",
    b"auxprop_plugin": b"sasldb",
    b"sasldb_path": SASLDB,
    b"mech_list": b"NTLM",
    b"log_level": b"3",
}

GETOPT = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.POINTER(ctypes.c_char_p),
    ctypes.POINTER(ctypes.c_uint),
)
LOG = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)


class Callback(ctypes.Structure):
    _fields_ = [("id", ctypes.c_ulong), ("proc", ctypes.c_void_p), ("context", ctypes.c_void_p)]


@GETOPT
def getopt(_context, _plugin, option, result, length):
    value = OPTIONS.get(option)
    if value is None:
        return -1  # SASL_FAIL: not set, the library's default applies
    result[0] = value
    if length:
        length[0] = len(value)
    return SASL_OK


@LOG
def log(_context, level, message):
    # stderr is Dovecot's log.
    text = message.decode(errors="replace") if message else ""
    print(f"ntlm_helper: sasl[{level}]: {text}", file=sys.stderr, flush=True)
    return SASL_OK


def main():
    lib = ctypes.CDLL("libsasl2.so.2")
    lib.sasl_errstring.restype = ctypes.c_char_p
    # Kept referenced for the life of the process: the library keeps the pointers.
    callbacks = (Callback * 3)(
        Callback(SASL_CB_GETOPT, ctypes.cast(getopt, ctypes.c_void_p), None),
        Callback(SASL_CB_LOG, ctypes.cast(log, ctypes.c_void_p), None),
        Callback(SASL_CB_LIST_END, None, None),
    )
    result = lib.sasl_server_init(callbacks, b"tg-dovecot-ntlm")
    if result != SASL_OK:
        print(f"ntlm_helper: sasl_server_init: {result}", file=sys.stderr, flush=True)
        return 1
    conn = ctypes.c_void_p()

    def reply(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def dispose():
        if conn.value:
            lib.sasl_dispose(ctypes.byref(conn))
            conn.value = None

    for line in sys.stdin:
        words = line.split()
        if len(words) != 2 or words[0] not in ("YR", "KK"):
            dispose()
            reply("BH unexpected request")
            continue
        try:
            data = base64.b64decode(words[1], validate=True)
        except ValueError:
            dispose()
            reply("BH bad base64")
            continue
        out = ctypes.c_char_p()
        out_len = ctypes.c_uint()
        if words[0] == "YR":
            dispose()
            result = lib.sasl_server_new(
                SERVICE, b"localhost", REALM, None, None, None, 0, ctypes.byref(conn)
            )
            if result != SASL_OK:
                conn.value = None
                reply(f"BH sasl_server_new: {result}")
                continue
            result = lib.sasl_server_start(
                conn, b"NTLM", data, len(data), ctypes.byref(out), ctypes.byref(out_len)
            )
        elif not conn.value:
            reply("BH KK without an exchange")
            continue
        else:
            result = lib.sasl_server_step(
                conn, data, len(data), ctypes.byref(out), ctypes.byref(out_len)
            )

        if result == SASL_CONTINUE:
            challenge = ctypes.string_at(out, out_len.value) if out_len.value else b""
            reply("TT " + base64.b64encode(challenge).decode())
        elif result == SASL_OK:
            user = ctypes.c_char_p()
            found = lib.sasl_getprop(conn, SASL_USERNAME, ctypes.byref(user))
            name = user.value.decode(errors="replace") if found == SASL_OK and user.value else ""
            dispose()
            # A name with a space would not survive the line protocol.
            if name and not any(c.isspace() for c in name):
                reply("AF " + name)
            else:
                reply("NA no usable user name")
        else:
            # Dovecot logs only the first word after NA; the details ("incorrect NTLMv2
            # response") reach the log through the log callback.
            reason = lib.sasl_errstring(result, None, None) or b"?"
            dispose()
            reply("NA " + "_".join(reason.decode(errors="replace").split()))
    dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
