"""Scanner profiles: each site gets a vendor with its own tags and pixel storage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SiteProfile:
    """How one site's scanner writes CT: vendor tags and pixel representation.

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


_VENDORS = (
    ("GE MEDICAL SYSTEMS", "Revolution CT", "revo_ct_22.1", "LUNG", 120, True, 16),
    ("SIEMENS", "SOMATOM Definition AS", "syngo CT VA48A", "B70f", 120, False, 12),
    ("Philips", "Brilliance 64", "4.1.6", "YC", 120, False, 12),
    ("TOSHIBA", "Aquilion ONE", "V6.0", "FC52", 120, True, 16),
    ("UIH", "uCT 760", "R001", "B_SHARP_C", 110, False, 12),
)


def site_profiles(sites: tuple[str, ...]) -> tuple[SiteProfile, ...]:
    """One profile per site name, vendors assigned in a fixed rotation."""
    profiles = []
    for i, name in enumerate(sites):
        manufacturer, model, software, kernel, kvp, signed, bits = _VENDORS[i % len(_VENDORS)]
        label = name.upper().replace("-", " ").replace("_", " ")
        profiles.append(SiteProfile(
            name=name, institution=f"SYNTHETIC GENERAL HOSPITAL {label}",
            manufacturer=manufacturer, model=model, software=software, kernel=kernel,
            kvp=kvp, signed=signed, bits_stored=bits,
        ))
    return tuple(profiles)
