"""``edgewise bundle``: sign and verify bundles (OpenSSF model-signing format), make keys.

  edgewise bundle keygen KEY            # KEY.pem (private, 0600) + KEY.pub
  edgewise bundle sign DIR --key KEY.pem
  edgewise bundle verify DIR --trusted-key KEY.pub [--trusted-key OTHER.pub]

``verify`` exits 0 when the signature holds and every file matches the manifest, 3 (a
bundle/integrity error) naming what failed otherwise. Needs ``pip install 'edgewise[signing]'``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from sdk.cli import add_command_group
from sdk.cli._common import add_json_flag, emit


def register(subparsers) -> None:
    sub = add_command_group(subparsers, "bundle", help="sign / verify bundles (OpenSSF model signing), make keys",
                            description="Sign every file of a bundle (manifest.json included) with an EC key, "
                                        "and verify it against trusted public keys.")

    k = sub.add_parser("keygen", help="write a new P-256 key pair: PREFIX.pem (0600) and PREFIX.pub")
    k.add_argument("prefix", help="path prefix of the key files")
    k.set_defaults(func=_keygen)

    s = sub.add_parser("sign", help="sign a bundle folder (writes DIR/bundle.sig)")
    s.add_argument("dir")
    s.add_argument("--key", required=True, help="EC private key, PEM")
    s.add_argument("--password-env", default=None, metavar="VAR",
                   help="environment variable holding the private key's password, if it is encrypted")
    add_json_flag(s)
    s.set_defaults(func=_sign)

    v = sub.add_parser("verify", help="verify a bundle's signature and hashes (exit 0, or 3 naming what failed)")
    v.add_argument("dir", help="bundle folder or .ewb archive")
    v.add_argument("--trusted-key", action="append", required=True, metavar="PUB.pem",
                   help="public key to trust (repeatable: any one of them may have signed)")
    add_json_flag(v)
    v.set_defaults(func=_verify)


def _keygen(args: argparse.Namespace) -> int:
    from sdk.bundle.signing import generate_keypair

    priv, pub = Path(f"{args.prefix}.pem"), Path(f"{args.prefix}.pub")
    generate_keypair(priv, pub)
    print(f"private key: {priv} (keep it secret)\npublic key:  {pub} (give it to --trusted-key)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from sdk.bundle.signing import sign_bundle

    password = None
    if args.password_env:
        if args.password_env not in os.environ:
            raise ValueError(f"--password-env {args.password_env}: that environment variable is not set")
        password = os.environ[args.password_env]
    sig = sign_bundle(args.dir, args.key, password)
    emit(args, {"signature": str(sig)}, f"signed {args.dir}: {sig}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from sdk.bundle import load_bundle
    from sdk.bundle.signing import verify_signature

    p = Path(args.dir)
    if not p.exists():
        raise FileNotFoundError(f"no bundle at {p}")
    b = load_bundle(p, trusted_keys=args.trusted_key)     # signature first, then every hash
    key = verify_signature(b.path, args.trusted_key)
    m = b.manifest
    emit(args, {"ok": True, "bundle": m.name, "version": m.version, "key": str(key), "files": len(m.files) + 1},
         f"ok: {m.name} {m.version} signed by {key}; {len(m.files) + 1} files match the signature and manifest")
    return 0
