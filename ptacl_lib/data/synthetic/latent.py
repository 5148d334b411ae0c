"""One latent state per synthetic subject: demographics, heart structure and electrical state.

Everything both modalities show is drawn here, once, so the ECG and the cine share a cause.
Marginals follow the UK Biobank CMR reference ranges of healthy adults (Petersen et al. 2017,
JCMR 19:18): LVEDV men 166±32 mL / women 124±21 mL, LVEF about 60±6 %, LVM men 103±21 g /
women 70±13 g, RVEDV men 182±36 mL / women 131±24 mL, RVEF about 57±6 %. About a fifth of the
subjects carry an abnormality: a dilated heart with low EF, a hypertrophied heart, or a bundle
branch block (LBBB far more likely when the EF is low).

Generator 2.0 adds the couplings real ECGs carry (each with its source in a comment below, the
calibration in docs/cohort.md): heart size and body habitus in QRS voltage and duration, sex in QRS,
ST and T, heart rate tied to stroke volume through the cardiac output, right-ventricular forces,
heart orientation, and rhythm (PVCs, atrial fibrillation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PHENOTYPE_CLASSES: tuple[str, ...] = ("normal", "dilated_low_ef", "hypertrophied")
CONDUCTIONS: tuple[str, ...] = ("normal", "LBBB", "RBBB")

#: Healthy reference means by sex (Petersen et al. 2017) and the body size they belong to.
_REFERENCE = {
    "M": {"lvedv": 166.0, "lvm": 103.0, "rvedv": 182.0, "lvef": 59.0, "rvef": 56.0, "bsa": 2.0, "qtc": 405.0},
    "F": {"lvedv": 124.0, "lvm": 70.0, "rvedv": 131.0, "lvef": 61.0, "rvef": 59.0, "bsa": 1.75, "qtc": 420.0},
}
#: Indexed LV mass (g/m^2) above which a subject is flagged as LVH.
_LVH_INDEX = {"M": 72.0, "F": 56.0}
#: Myocardial density, g/mL.
MYOCARDIAL_DENSITY = 1.05


@dataclass(frozen=True)
class AbnormalityRates:
    """How often each abnormality is drawn (the rest of the cohort is structurally normal)."""

    p_dilated: float = 0.07
    p_hypertrophied: float = 0.07
    p_rbbb: float = 0.03
    p_lbbb: float = 0.02             # in hearts without low EF
    p_lbbb_low_ef: float = 0.35      # in hearts with EF < 45 %
    p_af: float = 0.012              # atrial fibrillation at age 63 (x 2 per decade, x 3 with EF < 45 %)
    p_pvc: float = 0.06              # subjects with PVCs (x 2 with EF < 45 %)


@dataclass(frozen=True)
class SubjectLatent:
    """The hidden state of one subject. Volumes are targets; the manifest reports what the cine drew."""

    # demographics
    sex: str
    age: float
    height_cm: float
    weight_kg: float
    bsa: float
    # structure and function
    phenotype_class: str
    lvedv: float
    lvef: float
    lvm: float
    rvedv: float
    rvef: float
    lvh: bool
    # electrical state
    conduction: str
    heart_rate: float        # target mean rate, bpm
    pr_ms: float             # P onset to QRS onset
    qrs_ms: float
    qt_ms: float             # QRS onset to T end, at the mean RR
    axis_deg: float          # frontal QRS axis
    qrs_gain: float          # dipole amplitude of the main QRS deflection, mV
    lvh_strain: float        # 0..1, inverts lateral T waves in LVH
    rsa: float               # respiratory sinus arrhythmia, fraction of RR
    rv_gain: float           # dipole amplitude of right-ventricular free-wall activation, mV
    st_mv: float             # J-point / ST elevation along the anterior direction, mV
    t_gain: float            # T-wave amplitude factor
    rot_x_deg: float         # heart orientation: tilt about the left-right axis
    rot_y_deg: float         # heart orientation: rotation about the vertical axis (transition zone)
    chest_gain: float        # precordial attenuation by chest wall, adiposity and breast tissue
    limb_gain: float         # limb-lead attenuation by body habitus
    af: bool                 # atrial fibrillation: irregular RR, no P waves, fibrillatory waves
    pvc_rate: float          # probability that a beat is a premature ventricular contraction
    # mechanics
    emd_ms: float            # QRS onset to LV ejection onset
    es_delay_ms: float       # end-systole relative to T end
    ivrt_ms: float
    rapid_fill_ms: float
    early_fill_fraction: float
    lv_length_cm: float      # long-axis length used to turn volume into short-axis area
    # recording quality
    ecg_noise: float         # multiplies every ECG noise source
    image_noise: float       # Rician sigma of the cine, intensity units


def _mosteller_bsa(height_cm: float, weight_kg: float) -> float:
    return float(np.sqrt(height_cm * weight_kg / 3600.0))


def sample_latent(rng: np.random.Generator, rates: AbnormalityRates = AbnormalityRates()) -> SubjectLatent:
    """Draw one subject's latent state."""
    sex = "M" if rng.random() < 0.47 else "F"
    ref = _REFERENCE[sex]
    age = float(np.clip(rng.normal(63.0, 7.5), 45.0, 82.0))
    height = float(rng.normal(176.0, 6.8) if sex == "M" else rng.normal(163.0, 6.2))
    bmi = float(np.clip(rng.lognormal(np.log(26.5 if sex == "M" else 26.0), 0.14), 17.0, 45.0))
    weight = bmi * (height / 100.0) ** 2
    bsa = _mosteller_bsa(height, weight)

    # Structure: a shared "heart size" factor couples LV volume, LV mass and RV volume.
    z_size, z_edv, z_m, z_rv, z_ef, z_ref = rng.standard_normal(6)
    body = bsa / ref["bsa"]
    lvedv = ref["lvedv"] * body ** 0.9 * np.exp(0.16 * (0.6 * z_size + 0.8 * z_edv)) - 0.4 * (age - 63.0)
    lvm = ref["lvm"] * body ** 1.0 * np.exp(0.17 * (0.6 * z_size + 0.8 * z_m)) + 0.15 * (age - 63.0)
    rvedv = ref["rvedv"] * (lvedv / ref["lvedv"]) ** 0.9 * np.exp(0.09 * z_rv)
    lvef = ref["lvef"] + 5.0 * z_ef
    rvef = ref["rvef"] + 5.5 * (0.5 * z_ef + 0.87 * z_ref)

    u = rng.random()
    if u < rates.p_dilated:
        phenotype = "dilated_low_ef"
        lvedv *= rng.uniform(1.3, 1.7)
        lvef = rng.uniform(22.0, 42.0)
        lvm *= rng.uniform(1.1, 1.35)
        rvedv *= rng.uniform(1.05, 1.3)
        rvef -= rng.uniform(3.0, 10.0)
    elif u < rates.p_dilated + rates.p_hypertrophied:
        phenotype = "hypertrophied"
        lvm *= rng.uniform(1.4, 1.85)
        lvedv *= rng.uniform(0.82, 1.0)
        lvef += rng.uniform(2.0, 6.0)
    else:
        phenotype = "normal"

    # Conduction: LBBB is far more common in failing hearts; it costs some EF (dyssynchrony).
    p_lbbb = rates.p_lbbb_low_ef if lvef < 45.0 else rates.p_lbbb
    v = rng.random()
    conduction = "LBBB" if v < p_lbbb else ("RBBB" if v < p_lbbb + rates.p_rbbb else "normal")
    if conduction == "LBBB":
        lvef -= rng.uniform(3.0, 8.0)
    lvef = float(np.clip(lvef, 15.0, 78.0))
    rvef = float(np.clip(rvef, 25.0, 75.0))
    lvh = bool(lvm / bsa > _LVH_INDEX[sex])

    # Electrical state.
    # Heart rate follows the cardiac output: at rest CO = HR x SV with a cardiac index of about
    # 2.5-4 L/min/m^2 (Guyton & Hall, Textbook of Medical Physiology, ch. 20), so a small stroke
    # volume (small or failing heart) beats faster. The index varies with autonomic tone.
    # Only part of the stroke-volume variation shows in the rate (the rest is output, i.e. index).
    sv_ml = lvedv * lvef / 100.0
    rate_for_output = (bsa / sv_ml) / (1.9 / 88.0)
    heart_rate = float(np.clip(63.0 * rate_for_output ** 0.4 * np.exp(rng.normal(0.0, 0.14)), 46.0, 110.0))
    pr = float(np.clip(rng.normal(158.0, 18.0) + 0.6 * (age - 63.0), 115.0, 230.0))
    ef_widening = 0.45 * max(0.0, 62.0 - lvef)
    # QRS duration grows with LV mass and cavity size (the basis of the voltage-duration products:
    # Okin et al., J Am Coll Cardiol 1995;25:417-423) and is longer in men (Mason et al.,
    # J Electrocardiol 2007;40:228-234: reference ranges from 79,743 subjects).
    qrs = (rng.normal(85.0 if sex == "M" else 81.0, 7.0) + 16.0 * np.log(lvm / 85.0)
           + 12.0 * np.log(lvedv / 145.0) + ef_widening)
    if conduction == "LBBB":
        qrs = rng.uniform(135.0, 170.0) + 0.3 * ef_widening
    elif conduction == "RBBB":
        qrs = rng.uniform(122.0, 150.0)
    qrs = float(np.clip(qrs, 66.0, 185.0))
    rr = 60.0 / heart_rate
    # QTc longer in women (Rautaharju et al., Can J Cardiol 1992;8:690-695) and in failing hearts.
    qtc = rng.normal(ref["qtc"], 16.0) + 0.5 * max(0.0, qrs - 100.0) + 0.4 * max(0.0, 50.0 - lvef)
    qt = float(np.clip(qtc * np.sqrt(rr), 300.0, 520.0))  # Bazett
    # Frontal axis: leftward with age and adiposity (Frank et al., J Am Coll Cardiol 1986;7:295-299,
    # the ECG in obesity), rightward with a larger right ventricle relative to the left.
    axis = (rng.normal(40.0, 22.0) - 0.4 * (age - 63.0) - 1.2 * (bmi - 26.0)
            + 40.0 * np.log((rvedv / lvedv) / 1.1))
    if conduction == "LBBB":
        axis = rng.normal(-5.0, 20.0)
    axis = float(np.clip(axis, -45.0, 100.0))
    # QRS source strength: LV mass, plus the intracavitary blood volume that augments radial
    # (surface) potentials (Brody, Circ Res 1956;4:731-738). Body habitus attenuates it separately,
    # below, so the surface voltage is the product of heart and torso (Okin et al., J Am Coll
    # Cardiol 1996;27:124-131: voltage criteria fail in obesity).
    qrs_gain = float(1.2 * (lvm / 85.0) ** 0.9 * (lvedv / 145.0) ** 0.3 * np.exp(0.2 * rng.standard_normal()))
    # Right-ventricular free-wall forces grow with RV size (RV mass tracks RV volume); they pull the
    # QRS rightward and anterior (RVH criteria: Butler et al., Am J Cardiol 1986;57:639-643).
    rv_gain = float(0.22 * (rvedv / 150.0) ** 1.2 * np.exp(0.35 * rng.standard_normal()))
    lvh_strain = float(rng.uniform(0.4, 1.0)) if (lvh and rng.random() < 0.6) else 0.0
    # Sex in repolarisation: J-point/ST elevation in V2-V3 is larger in men and falls with age
    # (Surawicz & Parikh, J Am Coll Cardiol 2002;40:1870-1876); T waves are taller in men (Mason 2007).
    st_mv = float(np.clip(rng.normal(0.11 if sex == "M" else 0.04, 0.03) - 0.0015 * (age - 63.0), 0.0, 0.3))
    t_gain = float((1.1 if sex == "M" else 0.9) * np.exp(0.15 * rng.standard_normal()))
    # Heart position and torso: inter-individual anatomy explains much of the variability of the
    # multilead ECG (Hoekema et al., IEEE Trans Biomed Eng 2001;48:551-559). Adiposity turns the heart
    # horizontal and attenuates voltages; breast tissue attenuates the precordial leads in women.
    rot_x = float(rng.normal(0.0, 12.0) - 0.6 * (bmi - 26.0))
    rot_y = float(rng.normal(0.0, 20.0))
    chest_gain = float((bsa / 1.9) ** -0.5 * (bmi / 26.0) ** -0.6 * (0.88 if sex == "F" else 1.0)
                       * np.exp(0.4 * rng.standard_normal()))
    limb_gain = float((bmi / 26.0) ** -0.5 * np.exp(0.3 * rng.standard_normal()))
    # Rhythm: AF in about 2 % of this age range, more with age and in failing or dilated hearts;
    # frequent PVCs in about 6 % of middle-aged adults on a short ECG (Simpson et al., Am Heart J
    # 2002;143:535-540, ARIC), more with low EF.
    p_af = rates.p_af * np.exp(0.07 * (age - 63.0)) * (3.0 if lvef < 45.0 else 1.0)
    af = bool(rng.random() < p_af)
    p_pvc = rates.p_pvc * (2.0 if lvef < 45.0 else 1.0)
    pvc_rate = float(rng.uniform(0.04, 0.2)) if (not af and rng.random() < p_pvc) else 0.0

    # Mechanics: delay from electrical activation to ejection, and diastolic filling pattern.
    # Systolic time intervals: end-systole sits near the end of T (QRS onset + QT + a small delay);
    # the pre-ejection period (QRS onset to ejection) then follows PEP/LVET = 1.125 - 1.25 EF
    # (Garrard, Weissler & Dodge, Circulation 1970;42:455-462), so a failing ventricle ejects later
    # and for shorter; LBBB prolongs it further (dyssynchronous activation). With QT's rate
    # dependence this reproduces LVET falling with heart rate (Weissler et al., Circulation 1968;37:149-159).
    es_delay = float(rng.normal(5.0, 8.0))
    pep_ratio = max(0.2, 1.125 - 1.25 * lvef / 100.0) * np.exp(rng.normal(0.0, 0.08))
    emd = (qt + es_delay) * pep_ratio / (1.0 + pep_ratio) + (rng.uniform(20.0, 40.0) if conduction == "LBBB" else 0.0)
    stiff = phenotype == "hypertrophied" or lvh
    early_fill = np.clip(0.72 - 0.008 * (age - 63.0) - (0.12 if stiff else 0.0) + rng.normal(0.0, 0.04), 0.35, 0.85)
    if af:  # no atrial contraction: all filling is passive (the slow-filling share stays)
        early_fill = 0.92
    return SubjectLatent(
        sex=sex, age=age, height_cm=height, weight_kg=weight, bsa=bsa,
        phenotype_class=phenotype, lvedv=float(lvedv), lvef=lvef, lvm=float(lvm),
        rvedv=float(rvedv), rvef=rvef, lvh=lvh,
        conduction=conduction, heart_rate=heart_rate, pr_ms=pr, qrs_ms=qrs, qt_ms=qt,
        axis_deg=axis, qrs_gain=qrs_gain, lvh_strain=lvh_strain,
        rsa=float(np.clip(rng.uniform(0.01, 0.05) - 0.0006 * (age - 63.0), 0.003, 0.06)) if not af else 0.0,
        rv_gain=rv_gain, st_mv=st_mv, t_gain=t_gain, rot_x_deg=rot_x, rot_y_deg=rot_y,
        chest_gain=chest_gain, limb_gain=limb_gain, af=af, pvc_rate=pvc_rate,
        emd_ms=float(emd), es_delay_ms=es_delay,
        ivrt_ms=float(np.clip(rng.normal(75.0, 10.0) + 0.5 * (age - 63.0) + (15.0 if stiff else 0.0), 55.0, 120.0)),
        rapid_fill_ms=float(rng.uniform(120.0, 190.0)),
        early_fill_fraction=float(early_fill),
        lv_length_cm=float(7.8 * (lvedv / 145.0) ** (1.0 / 3.0) * np.exp(0.04 * rng.standard_normal())),
        ecg_noise=float(rng.lognormal(0.0, 0.45)),
        image_noise=float(rng.uniform(0.015, 0.045)),
    )


#: The ECG-side latent variables, in the order of ``ecg_latent_vector`` (the ``ecg_latents`` store extra):
#: every per-subject parameter the ECG simulator draws the recording from (noise levels excluded).
ECG_LATENTS: tuple[str, ...] = ("heart_rate", "pr_ms", "qrs_ms", "qt_ms", "axis_deg", "qrs_gain", "rv_gain",
                                "lvh_strain", "st_mv", "t_gain", "rot_x_deg", "rot_y_deg", "chest_gain",
                                "limb_gain", "rsa", "lbbb", "rbbb", "af", "pvc_rate")


def ecg_latent_vector(lat: SubjectLatent) -> np.ndarray:
    """float32 ``[len(ECG_LATENTS)]``: the subject's ECG-side latents (conduction and AF as 0/1)."""
    flags = {"lbbb": lat.conduction == "LBBB", "rbbb": lat.conduction == "RBBB", "af": lat.af}
    return np.array([float(flags[name]) if name in flags else float(getattr(lat, name)) for name in ECG_LATENTS],
                    dtype=np.float32)
