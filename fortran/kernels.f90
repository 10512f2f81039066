! The f2py-facing interface: the only file given to f2py.
!
! Conventions, chosen so that NumPy never copies on the hot path:
!   * arrays are declared fastest index first; the Python side passes
!     transposed views of its C-ordered arrays (``vectors.T`` is (3, n)) and
!     reads ``out.T`` back as a C-ordered array;
!   * dummy-argument kinds come from iso_c_binding (f2py maps them itself);
!   * every routine is ``threadsafe``: f2py releases the GIL around the call;
!   * sizes are hidden and taken from the arrays; the Python wrappers check
!     every index array against those sizes before the call.
module kernels
  use, intrinsic :: iso_c_binding, only: c_double, c_int
  use acsf_kernel, only: acsf_centres
  implicit none

contains

  !> Number of OpenMP threads the kernels use by default (1 without OpenMP).
  subroutine max_threads(nt)
    !$ use omp_lib, only: omp_get_max_threads
    integer(c_int), intent(out) :: nt
    nt = 1
    !$ nt = omp_get_max_threads()
  end subroutine max_threads

  !> ACSF features of nc centres, optionally with position and strain gradients.
  !> feat(nf, nc); grad(nf, 3, nslots) = dG/dr of slot atoms; strain(nf, 3, 3, nsc)
  !> with strain(f, y, x, i) = dG_f(i) / d eps_xy. Pass nslots = 0 / nsc = 0 to skip.
  subroutine acsf(nbr_start, vec, dist, nbr_species, nbr_slot, centre_slot, slot_start, &
                  g2, g3, g4, g5, rc, ckind, cpar, ctab, nspecies, pair_factor, &
                  want_grad, want_strain, nthreads, nf, nslots, nsc, feat, grad, strain, &
                  nc, ne, n2, n3, n4, n5, ntab, npar)
    !f2py threadsafe
    !f2py integer intent(hide), depend(centre_slot) :: nc = len(centre_slot)
    !f2py integer intent(hide), depend(dist) :: ne = len(dist)
    !f2py integer intent(hide), depend(g2) :: n2 = shape(g2, 1)
    !f2py integer intent(hide), depend(g3) :: n3 = len(g3)
    !f2py integer intent(hide), depend(g4) :: n4 = shape(g4, 1)
    !f2py integer intent(hide), depend(g5) :: n5 = shape(g5, 1)
    !f2py integer intent(hide), depend(ctab) :: ntab = shape(ctab, 1)
    !f2py integer intent(hide), depend(cpar) :: npar = len(cpar)
    integer(c_int), intent(in) :: nc, ne, n2, n3, n4, n5, ntab, npar, nf, nslots, nsc
    integer(c_int), intent(in) :: nbr_start(nc + 1), nbr_species(ne), nbr_slot(ne)
    integer(c_int), intent(in) :: centre_slot(nc), slot_start(nc + 1)
    real(c_double), intent(in) :: vec(3, ne), dist(ne)
    real(c_double), intent(in) :: g2(2, n2), g3(n3), g4(3, n4), g5(3, n5)
    real(c_double), intent(in) :: rc, cpar(npar), ctab(2, ntab), pair_factor
    integer(c_int), intent(in) :: ckind, nspecies, nthreads
    logical, intent(in) :: want_grad, want_strain
    real(c_double), intent(out) :: feat(nf, nc), grad(nf, 3, nslots), strain(nf, 3, 3, nsc)

    call acsf_centres(nbr_start, vec, dist, nbr_species, nbr_slot, centre_slot, slot_start, &
                      g2, g3, g4, g5, rc, ckind, cpar, ctab, nspecies, pair_factor, &
                      want_grad .and. nslots > 0, want_strain .and. nsc > 0, nthreads, &
                      feat, grad, strain)
  end subroutine acsf

end module kernels
