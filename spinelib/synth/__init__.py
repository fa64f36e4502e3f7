"""Synthetic paired DXA/MRI cohort with known ground truth (anatomy, volumes, DXA projection, cohort).

Modules, in the order data flows through them:

``population``  demographics of an adult cohort like UK Biobank's imaging cohort
``shape``       spine shape in 3D: vertebral sizes, kyphosis, lordosis, scoliosis mixture,
                axial rotation, supine placement on the table, the true clinical angles
``primitives``  analytic solids (ellipsoids, capped elliptic cylinders): exact chords, occupancy
``anatomy``     materials, the table-flattened torso, the primitive list of one session
``mri``         Dixon-like fat / water volumes and the label volume (partial volume, bias, noise)
``dxa``         AP and lateral DXA projections by exact line integrals (blur, noise)
``subject``     ``make_subject(index, params)``: one subject, seeded by (seed, index)
``cohort``      ``generate_cohort(out_dir, params, jobs=...)``: files + manifest, resumable
``stats``       cohort statistics: what the AP image could give away about the sagittal shape
``bench``       the ``synth_cohort`` benchmark entry
"""
