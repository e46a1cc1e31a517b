"""From the spec to places: the URL the ASR service fetches the audio from, and the store the
outputs go to. Shared volumes are named by claim; the operator knows where each claim is mounted
(``OMOAI_OPERATOR_VOLUMES``), and the ASR service mounts it at the same path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from omoai_operator.failures import StageError
from omoai_operator.spec import JobSpec, S3Output, S3Source
from omoai_operator.storage import LocalStore, S3Store, Store

#: ``(namespace, name) -> {key: value}`` (decoded). Raises StageError when it cannot be read.
SecretReader = Callable[[str, str], Awaitable[Mapping[str, str]]]

#: Presigned URLs must outlive the longest job the ASR service could still be decoding.
PRESIGN_EXPIRY_S = 12 * 3600


class Locations:
    def __init__(self, volumes: Mapping[str, str], read_secret: SecretReader | None) -> None:
        self.volumes = dict(volumes)
        self.read_secret = read_secret

    def _mount(self, claim: str, what: str) -> Path:
        try:
            return Path(self.volumes[claim])
        except KeyError:
            known = ", ".join(sorted(self.volumes)) or "none"
            raise StageError.permanent(
                "VolumeNotShared",
                f"{what} names PVC {claim!r}, which the operator does not mount (mounted claims: {known}); "
                "use a shared claim or add it to the chart's operator.volumes",
            ) from None

    def local_audio(self, spec: JobSpec) -> Path | None:
        """A file to upload instead of handing the service a URL (``omoai run`` only)."""
        return None

    async def audio_url(self, spec: JobSpec, namespace: str) -> str:
        src = spec.source
        if src.url is not None:
            return src.url
        if src.pvc is not None:
            path = self._mount(src.pvc.claim_name, "source.pvc") / src.pvc.path
            return path.resolve().as_uri()
        assert src.s3 is not None
        client = await self._s3_client(src.s3, namespace)
        return await asyncio.to_thread(
            client.generate_presigned_url,
            "get_object",
            Params={"Bucket": src.s3.bucket, "Key": src.s3.key},
            ExpiresIn=PRESIGN_EXPIRY_S,
        )

    async def store(self, spec: JobSpec, namespace: str, uid: str) -> Store:
        out = spec.output
        if out.pvc is not None:
            final = self._mount(out.pvc.claim_name, "output.pvc") / out.pvc.path
            return LocalStore(final, uid, location=f"pvc://{out.pvc.claim_name}/{out.pvc.path.strip('/')}/")
        assert out.s3 is not None
        client = await self._s3_client(out.s3, namespace)
        return S3Store(client, out.s3.bucket, out.s3.prefix, uid)

    async def _s3_client(self, ref: S3Source | S3Output, namespace: str) -> Any:
        try:
            import boto3  # optional extra "s3"
        except ImportError:
            raise StageError.permanent(
                "S3Unsupported", "S3 sources and outputs need the operator built with the s3 extra (boto3)"
            ) from None
        if self.read_secret is None:
            raise StageError.permanent("S3Unsupported", "no way to read the S3 credentials Secret here")
        data = await self.read_secret(namespace, ref.secret_ref.name)
        missing = [k for k in ("accessKeyId", "secretAccessKey") if not data.get(k)]
        if missing:
            raise StageError.permanent(
                "InvalidSecret",
                f"Secret {ref.secret_ref.name!r} lacks key(s) {', '.join(missing)} (needs accessKeyId and secretAccessKey)",
            )
        return boto3.client(
            "s3",
            aws_access_key_id=data["accessKeyId"],
            aws_secret_access_key=data["secretAccessKey"],
            aws_session_token=data.get("sessionToken") or None,
            region_name=ref.region or None,
            endpoint_url=ref.endpoint or None,
        )
