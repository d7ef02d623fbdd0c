"""Operators' commands: ``admin add-user``, ``admin remove-user``, ``admin bucket-policy``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from flowcache import admin, identity
from flowcache.cli import output
from flowcache.config import StoreConfig, TierSpec

admin_app = typer.Typer(
    cls=output.OneLineErrors, help="Operators: provision users, generate bucket policies.",
                        no_args_is_help=True)
RedisUrl = Annotated[str | None, typer.Option("--redis-url", help="admin connection to Redis "
                                              "(default: the redis tier of FLOWCACHE_STORE)")]
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]


def _admin_redis(config: StoreConfig, url: str | None) -> tuple[Any, str] | None:
    from flowcache.tiers.redis_urls import connect  # one server or a cluster's seed nodes

    spec = next((spec for spec in map(TierSpec.parse, config.tiers) if spec.kind == "redis"),
                None)
    prefix = str(spec.options.get("prefix", "flowcache:")) if spec else "flowcache:"
    if url:
        return connect(url), prefix
    if spec is None:
        return None
    return connect(spec.url), prefix


@admin_app.command("add-user")
def admin_add_user(
    user: Annotated[str, typer.Argument(help="the new user (their namespace)")],
    redis_url: RedisUrl = None,
    key_dir: Annotated[str | None, typer.Option("--key-dir", help="where to write <user>.key "
                                                "(default: FLOWCACHE_KEYS_DIR)")] = None,
    inline_key: Annotated[bool, typer.Option("--inline-key", help="print "
                          "FLOWCACHE_SIGNING_KEY instead of a key file path")] = False,
    rotate_key: Annotated[bool, typer.Option("--rotate-key", help="replace an existing key "
                          "(entries signed with the old one become unreadable)")] = False,
    as_json: Json = False,
) -> None:
    """Provision USER: a signing key, a Redis ACL user confined to their keys, and print the
    configuration they need."""
    config = StoreConfig.from_env()
    identity.validate_user(user)
    key_path = (Path(key_dir) if key_dir else config.keys_dir).expanduser() / f"{user}.key"
    if key_path.exists() and not rotate_key:
        key = identity.load_or_create_key(key_path)
    else:
        key = identity.new_key()
        identity.write_key(key_path, key, replace=rotate_key)
    settings = {"FLOWCACHE_USER": user}
    if inline_key:
        settings["FLOWCACHE_SIGNING_KEY"] = key.hex()
    else:
        settings["FLOWCACHE_SIGNING_KEY_FILE"] = str(key_path)
    notes = []
    connection = _admin_redis(config, redis_url)
    if connection is None:
        settings["FLOWCACHE_STORE"] = "+".join(config.tiers)
        notes.append("no redis tier: no Redis ACL user was made")
    else:
        client, prefix = connection
        tenant = admin.provision_redis_user(client, user, prefix=prefix)
        settings["FLOWCACHE_STORE"] = admin.tenant_store_spec(config.tiers, tenant)
        notes.append(f"Redis ACL user {tenant.acl_user}: keys "
                     + " ".join(admin.tenant_key_patterns(user, prefix))
                     + (" (saved to the ACL file)" if tenant.persisted else
                        " (not persisted: the server has no aclfile; re-run after a restart)"))
    notes.append(f"object store: confine {user}'s credentials to their prefix with "
                 f"`flowcache admin bucket-policy {user} --s3 BUCKET/PREFIX` (or --gcs)")
    if as_json:
        output.emit_json({"settings": settings, "notes": notes})
        return
    lines = [f"# flowcache configuration for {user}"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in settings.items()]
    lines += [f"# {line}" for line in notes]
    typer.echo("\n".join(lines))


@admin_app.command("remove-user")
def admin_remove_user(user: Annotated[str, typer.Argument()], redis_url: RedisUrl = None,
                      as_json: Json = False) -> None:
    """Delete USER's Redis ACL user (their entries stay: `flowcache clear --user` removes them)."""
    connection = _admin_redis(StoreConfig.from_env(), redis_url)
    if connection is None:
        output.fail("no redis tier configured and no --redis-url", output.USAGE)
    removed = admin.remove_redis_user(connection[0], user)
    if as_json:
        output.emit_json({"acl_user": admin.acl_username(user), "removed": removed})
        return
    output.note(f"{admin.acl_username(user)}: {'removed' if removed else 'did not exist'}")


@admin_app.command("sync-acls")
def admin_sync_acls(redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """Give every node of a Redis Cluster the same flowcache ACL users (after adding a node,
    or when one was down while users were added or removed): most nodes decide."""
    connection = _admin_redis(StoreConfig.from_env(), redis_url)
    if connection is None:
        output.fail("no redis tier configured and no --redis-url", output.USAGE)
    changes = admin.sync_redis_acls(connection[0])
    if as_json:
        output.emit_json({"changes": changes})
        return
    for node, users in sorted(changes.items()):
        output.note(f"{node}: {' '.join(users)}")
    if not changes:
        output.note("every node already has the same flowcache ACL users")


@admin_app.command("bucket-policy")
def admin_bucket_policy(
    user: Annotated[str, typer.Argument()],
    s3: Annotated[str | None, typer.Option("--s3", help="BUCKET/PREFIX of the durable tier "
                                           "on S3")] = None,
    gcs: Annotated[str | None, typer.Option("--gcs", help="BUCKET/PREFIX of the durable tier "
                                            "on GCS")] = None,
    principal: Annotated[str | None, typer.Option("--principal", help="S3: the user's IAM "
                         "ARN, for a bucket policy (default: an identity policy)")] = None,
    member: Annotated[str | None, typer.Option("--member", help="GCS: the user's principal, "
                      "e.g. serviceAccount:alice@project.iam.gserviceaccount.com")] = None,
    commands: Annotated[bool, typer.Option("--commands", help="GCS: print the gcloud commands "
                                           "for a managed folder (listing included)")] = False,
) -> None:
    """Print an IAM policy (JSON) confining USER's object-store credentials to their prefix."""
    if bool(s3) == bool(gcs):
        output.fail("give exactly one of --s3 BUCKET/PREFIX or --gcs BUCKET/PREFIX",
                    output.USAGE)
    if s3:
        typer.echo(json.dumps(admin.s3_policy(user, s3, principal=principal), indent=2))
    elif commands:
        typer.echo("\n".join(admin.gcs_managed_folder_commands(user, gcs, member=member)))
    else:
        typer.echo(json.dumps(admin.gcs_policy(user, gcs, member=member), indent=2))
