"""The gene programme and ZINB counts of the synthetic sections.

A spot's mean depends on what its own 100 µm disk shows (domain mix, nuclear density) and,
for "receiver" genes, on the ligand made by the spots around it (Gaussian weights, 1 grid
step wide, up to 2 steps away). A spot's own patch cannot show its neighbours, so only a
model that looks at neighbour context can predict the receivers well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from stflow.data.simulator.latent_tissue import DOMAINS, GRID_UM

MARKERS = {
    "tumour": ("ERBB2", "GATA3", "KRT19", "EPCAM", "GRB7"),
    "stroma": ("COL1A1", "COL1A2", "COL3A1", "DCN", "LUM"),
    "immune": ("PTPRC", "CD74", "IGKC", "CD52", "HLA-DRA"),
    "adipose": ("ADIPOQ", "PLIN1", "FABP4"),
}
# ligand, the domain that makes it, and the genes it induces in the spots around it
INTERACTIONS = (
    ("TGFB1", "tumour", ("POSTN", "FAP", "ACTA2", "COL11A1")),
    ("IFNG", "immune", ("CXCL9", "CXCL10", "IDO1", "GBP1")),
    ("WNT5A", "stroma", ("AXIN2", "NKD1", "LGR5", "TCF7")),
)
HOUSEKEEPING = ("ACTB", "GAPDH", "B2M", "RPLP0")
RARE = ("INS", "ALB", "MYOD1")
MIN_NOISE_GENES = 3
NEIGHBOUR_SIGMA_UM = GRID_UM  # width of the ligand's reach
NEIGHBOUR_RADIUS_UM = 2.05 * GRID_UM  # neighbours up to two grid steps away


def programme_size() -> int:
    """Genes the structured programme needs (markers, ligands, receivers, fixed, rare)."""
    return (sum(len(g) for g in MARKERS.values()) + sum(1 + len(r) for _, _, r in INTERACTIONS)
            + len(HOUSEKEEPING) + len(RARE))


@dataclass
class Programme:
    """Per-gene parameters shared by every section of a dataset."""

    genes: np.ndarray  # (G,) str, in count-table order
    role: np.ndarray  # (G,) str: marker:<domain>, ligand, receiver, housekeeping, rare, noise
    base: np.ndarray  # (G,) mean count scale
    profile: np.ndarray  # (G, D) relative level per domain (markers, receivers' gate)
    density_power: np.ndarray  # (G,) how the mean follows nuclear density
    ligand_index: np.ndarray  # (P,) gene index of each ligand
    ligand_domain: np.ndarray  # (P,) domain index making each ligand
    receiver_index: np.ndarray  # (R,) gene index of each receiver
    receiver_pair: np.ndarray  # (R,) which ligand (0..P-1) drives each receiver
    receiver_beta: np.ndarray  # (R,) log-fold change per unit neighbour ligand signal
    pi: np.ndarray  # (G,) zero-inflation probability
    theta: np.ndarray  # (G,) negative binomial size (inverse dispersion)


def make_programme(rng: np.random.Generator, n_genes: int) -> Programme:
    """Draw the gene programme; filler genes ``GENE001``... are pure noise."""
    n_domains = len(DOMAINS)
    names: list[str] = []
    roles: list[str] = []
    profiles: list[np.ndarray] = []
    for domain, genes in MARKERS.items():
        for gene in genes:
            profile = rng.uniform(0.02, 0.12, n_domains)
            profile[DOMAINS.index(domain)] = 1.0
            names.append(gene)
            roles.append(f"marker:{domain}")
            profiles.append(profile)
    ligand_index, ligand_domain, receiver_index, receiver_pair = [], [], [], []
    for pair, (ligand, domain, receivers) in enumerate(INTERACTIONS):
        ligand_index.append(len(names))
        ligand_domain.append(DOMAINS.index(domain))
        names.append(ligand)
        roles.append("ligand")
        profiles.append(np.ones(n_domains))
        for gene in receivers:
            gate = rng.uniform(0.7, 1.4, n_domains)
            gate[DOMAINS.index(domain)] = 0.15  # the source domain itself responds little
            receiver_index.append(len(names))
            receiver_pair.append(pair)
            names.append(gene)
            roles.append("receiver")
            profiles.append(gate)
    for gene in HOUSEKEEPING:
        names.append(gene)
        roles.append("housekeeping")
        profiles.append(np.ones(n_domains))
    for gene in RARE:
        names.append(gene)
        roles.append("rare")
        profiles.append(np.ones(n_domains))
    for k in range(n_genes - len(names)):
        names.append(f"GENE{k + 1:03d}")
        roles.append("noise")
        profiles.append(np.ones(n_domains))
    role = np.array(roles)
    n = len(names)
    base = np.select(
        [np.char.startswith(role, "marker"), role == "ligand", role == "receiver",
         role == "housekeeping", role == "rare"],
        [rng.uniform(15, 60, n), rng.uniform(6, 15, n), rng.uniform(3.0, 8.0, n),
         rng.uniform(30, 100, n), rng.uniform(0.005, 0.04, n)],
        default=np.exp(rng.uniform(np.log(0.2), np.log(8.0), n)))
    density_power = np.where(np.char.startswith(role, "marker"), rng.uniform(0.3, 1.0, n), 0.0)
    pi = np.where(role == "rare", 0.0, rng.uniform(0.05, 0.3, n))
    theta = rng.uniform(2.0, 8.0, n)
    order = rng.permutation(n)  # real tables are not grouped by programme
    where = np.argsort(order)
    return Programme(
        genes=np.array(names)[order], role=role[order], base=base[order],
        profile=np.array(profiles)[order], density_power=density_power[order],
        ligand_index=where[ligand_index], ligand_domain=np.array(ligand_domain),
        receiver_index=where[receiver_index], receiver_pair=np.array(receiver_pair),
        receiver_beta=rng.uniform(3.0, 4.0, len(receiver_index)),
        pi=pi[order], theta=theta[order])


@dataclass
class Batch:
    """A patient's shift of expression: per-gene log shift, depth, ambient offset."""

    log_shift: np.ndarray  # (G,)
    depth: float
    ambient: float  # fraction of each gene's typical level added everywhere

    @classmethod
    def draw(cls, rng: np.random.Generator, programme: Programme, scale: float = 1.0) -> Batch:
        """``scale`` multiplies the spread of the log shifts and the log depth (1: the
        simulator's own spread, 0: no patient shift); the draws, hence every other random
        number, are the same whatever the scale. The ambient level is not scaled."""
        shift = rng.normal(0.0, 0.25, len(programme.genes)) * scale
        shift[programme.genes == "ERBB2"] += rng.normal(0.0, 0.6) * scale  # HER2 status varies
        depth = float(np.exp(rng.normal(0.0, 0.3) * scale))
        return cls(shift, depth, float(rng.uniform(0.02, 0.15)))


def neighbour_signal(pixel_xy: np.ndarray, mpp: float, activity: np.ndarray) -> np.ndarray:
    """Gaussian-weighted ligand activity of the other spots within two grid steps.

    Divided by the weight of a full neighbourhood, so tissue edges (no cells) add nothing.
    """
    coords = pixel_xy * mpp
    tree = cKDTree(coords)
    pairs = tree.query_pairs(NEIGHBOUR_RADIUS_UM, output_type="ndarray")
    steps = np.array([(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)
                      if 0 < dx * dx + dy * dy <= (NEIGHBOUR_RADIUS_UM / GRID_UM) ** 2])
    full = np.exp(-0.5 * (steps**2).sum(1) * (GRID_UM / NEIGHBOUR_SIGMA_UM) ** 2).sum()
    signal = np.zeros_like(activity)
    if len(pairs):
        dist = np.linalg.norm(coords[pairs[:, 0]] - coords[pairs[:, 1]], axis=1)
        weight = np.exp(-0.5 * (dist / NEIGHBOUR_SIGMA_UM) ** 2)[:, None]
        np.add.at(signal, pairs[:, 0], weight * activity[pairs[:, 1]])
        np.add.at(signal, pairs[:, 1], weight * activity[pairs[:, 0]])
    return signal / full


@dataclass
class SpotExpression:
    """True means and drawn counts of the spots of one section."""

    mean: np.ndarray  # (N, G) ZINB mean of the non-inflated part
    counts: np.ndarray  # (N, G) int64
    activity: np.ndarray  # (N, P) own ligand activity
    signal: np.ndarray  # (N, P) neighbours' ligand activity
    library: np.ndarray  # (N,) library-size factor


def draw_expression(rng: np.random.Generator, programme: Programme, batch: Batch,
                    fractions: np.ndarray, density: np.ndarray, pixel_xy: np.ndarray,
                    mpp: float) -> SpotExpression:
    """Means from morphology and neighbours, then ZINB counts (gamma–Poisson, then dropout)."""
    activity = fractions[:, programme.ligand_domain] * density[:, None]
    signal = neighbour_signal(pixel_xy, mpp, activity)
    level = (fractions @ programme.profile.T) * density[:, None] ** programme.density_power
    level[:, programme.ligand_index] = 0.1 + 2.0 * activity
    level[:, programme.receiver_index] *= np.exp(
        programme.receiver_beta * signal[:, programme.receiver_pair])
    typical = programme.base * level.mean(axis=0)
    library = np.exp(rng.normal(0.0, 0.2, len(density))) * density**0.4
    section_depth = float(np.exp(rng.normal(0.0, 0.1)))
    mean = (batch.depth * section_depth * library[:, None]
            * (np.exp(batch.log_shift) * programme.base * level + batch.ambient * typical))
    rate = rng.gamma(programme.theta, mean / programme.theta)
    counts = rng.poisson(rate)
    counts[rng.random(counts.shape) < programme.pi] = 0
    return SpotExpression(mean=mean, counts=counts, activity=activity, signal=signal,
                          library=library)
