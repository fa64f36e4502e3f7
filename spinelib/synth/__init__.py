"""Synthetic paired DXA/MRI cohort with known ground truth (anatomy, volumes, DXA projection, cohort).

Modules, in the order data flows through them:

``population``  demographics of an adult cohort like UK Biobank's imaging cohort
``shape``       drawn spine shape parameters: vertebral sizes, kyphosis, lordosis, scoliosis
                mixture, the posture change between sessions
``chain``       the spine as a chain of rigid vertebrae (tilts, axial rotation, frames, centres)
                and the true clinical angles read from it
``supine``      supine placement of the spine on the table (back thickness, pitch)
``anatomy``     drawn body parameters (torso and frame sizes) and the tissue materials
``torso``       the table-flattened, slab-wise elliptic torso
``primitives``  analytic solids (ellipsoids, capped elliptic cylinders): exact chords, occupancy
``parts``       the primitive list of one session: organs, pelvis, ribs, chest wall, vertebrae, discs
``mri``         Dixon-like fat / water volumes and the label volume (partial volume, bias, noise)
``dxa``         AP and lateral DXA projections by exact line integrals (blur, noise)
``config``      ``SynthConfig``: the cohort's settings, read once from the profile
``subject``     ``make_subject(index, config)``: one subject, seeded by (seed, index)
``cohort``      ``generate_cohort(out_dir, config, jobs=...)``: files + manifest, resumable
``stats``       cohort statistics: what the AP image could give away about the sagittal shape
"""
