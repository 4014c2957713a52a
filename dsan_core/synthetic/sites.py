"""Scanner profiles: each site gets a vendor with its own tags, pixel storage and pixels.

A site's pixels differ from another's by its noise, reconstruction kernel and a small
HU offset (`scanner.Scanner`). The train-validation sites rotate through `TV_SCANNERS`;
the later CAP site, which no earlier scan comes from, gets `LATER_SCANNER`, outside
their range on all three (noisier, smoother and brighter than any of them), so "CAP
from an unseen site" is a real shift. Which patient goes to which site is the
cohort plan's business (`cohort`): independent of the label in the earlier set.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsan_core.synthetic.scanner import Scanner


@dataclass(frozen=True)
class SiteProfile:
    """How one site's scanner writes CT: vendor tags, pixel representation, pixel effects.

    Pixels are always stored as HU + 1024 with RescaleIntercept -1024; `signed`
    picks int16 (PixelRepresentation 1) or uint16 (0), `bits_stored` 16 or 12.
    """

    name: str
    institution: str
    manufacturer: str
    model: str
    software: str
    kernel: str
    kvp: int
    signed: bool
    bits_stored: int
    scanner: Scanner = Scanner()


_VENDORS = (
    ("GE MEDICAL SYSTEMS", "Revolution CT", "revo_ct_22.1", "LUNG", 120, True, 16),
    ("SIEMENS", "SOMATOM Definition AS", "syngo CT VA48A", "B70f", 120, False, 12),
    ("Philips", "Brilliance 64", "4.1.6", "YC", 120, False, 12),
    ("TOSHIBA", "Aquilion ONE", "V6.0", "FC52", 120, True, 16),
    ("UIH", "uCT 760", "R001", "B_SHARP_C", 110, False, 12),
)
#: Pixel effects of the earlier sites, in the vendors' rotation: noise SD (HU),
#: kernel sharpness, HU offset.
TV_SCANNERS = (
    Scanner(noise_hu=14.0, sharpness=0.8, offset_hu=0.0),
    Scanner(noise_hu=22.0, sharpness=-0.5, offset_hu=12.0),
    Scanner(noise_hu=10.0, sharpness=0.2, offset_hu=-10.0),
    Scanner(noise_hu=18.0, sharpness=1.2, offset_hu=6.0),
    Scanner(noise_hu=26.0, sharpness=-0.3, offset_hu=-16.0),
)
LATER_SCANNER = Scanner(noise_hu=34.0, sharpness=-0.8, offset_hu=28.0)


def site_profiles(sites: tuple[str, ...], later_site: str | None = None
                  ) -> tuple[SiteProfile, ...]:
    """One profile per site name (vendors and TV pixels in a fixed rotation), then the
    later CAP site's, when there is one, with `LATER_SCANNER`."""
    names = sites + ((later_site,) if later_site is not None else ())
    profiles = []
    for i, name in enumerate(names):
        manufacturer, model, software, kernel, kvp, signed, bits = _VENDORS[i % len(_VENDORS)]
        scanner = LATER_SCANNER if i >= len(sites) else TV_SCANNERS[i % len(TV_SCANNERS)]
        label = name.upper().replace("-", " ").replace("_", " ")
        profiles.append(SiteProfile(
            name=name, institution=f"SYNTHETIC GENERAL HOSPITAL {label}",
            manufacturer=manufacturer, model=model, software=software, kernel=kernel,
            kvp=kvp, signed=signed, bits_stored=bits, scanner=scanner,
        ))
    return tuple(profiles)
