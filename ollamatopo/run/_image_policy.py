"""compose's `pull_policy` and `platform` for the images of a run (compose v2's mustPull):

- `missing` (and `if_not_present`): pulled when the engine does not have it;
- `never`: never pulled; a missing image fails its services, saying so;
- `always`: pulled on every `up`, also when present (here nothing can be pulled, so such
  a run fails clearly, with the pull's error);
- `daily`, `weekly`, `every_<duration>`: pulled when missing, or when the engine tagged it
  longer ago than that (the image's LastTagTime);
- `platform`: a present image of another platform fails its services and nothing is
  pulled (the engine would refuse to create it anyway); a pulled one is asked for that
  platform.

Of several services of one image, the most eager policy wins (a pull when any of them
asks for one; of refresh periods the shortest) and the first platform named.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ollamatopo.engine._docker import ImageFacts
from ollamatopo.engine._payloads import ContainerConfig
from ollamatopo.plan._container import platform_matches, refresh_seconds

EAGERNESS = {"never": 0, "missing": 1, "refresh": 2, "always": 3}


@dataclass(frozen=True)
class ImageWants:
    policy: str = "missing"
    platform: str | None = None

    @property
    def refresh_s(self) -> float | None:
        return refresh_seconds(self.policy)

    @property
    def checked(self) -> bool:
        """A present image must be inspected before it counts as ready."""
        return self.platform is not None or self.refresh_s is not None

    def _eagerness(self) -> tuple[int, float]:
        refresh = self.refresh_s
        kind = "refresh" if refresh is not None else self.policy
        return EAGERNESS[kind], -(refresh or 0.0)

    def problem(self, image: str, facts: ImageFacts) -> str | None:
        """Why the present image cannot serve, if it cannot (another platform)."""
        if self.platform is None or platform_matches(self.platform, facts.platform):
            return None
        return (f"image {image} on the engine is {facts.platform}, not {self.platform} "
                "(its platform:); nothing was pulled: load or build the image for "
                f"{self.platform}, or remove platform:")

    def stale(self, facts: ImageFacts, now: float) -> bool:
        """A refresh policy's period has passed since the engine last tagged the image."""
        refresh = self.refresh_s
        return refresh is not None and (facts.tagged_at is None
                                        or now - facts.tagged_at > refresh)


def image_wants(containers: Iterable[ContainerConfig]) -> dict[str, ImageWants]:
    wants: dict[str, ImageWants] = {}
    for config in containers:
        mine = ImageWants(config.pull_policy, config.create_kwargs.get("platform"))
        known = wants.get(config.image)
        if known is None:
            wants[config.image] = mine
        else:
            eager = max(known, mine, key=ImageWants._eagerness)
            wants[config.image] = ImageWants(eager.policy, known.platform or mine.platform)
    return wants


NEVER_PULLED = ("is not on the engine, and its pull_policy is never: nothing was pulled; "
                "load or build the image first, or use pull_policy missing")
