! The f2py-facing interface: the only file given to f2py.
!
! Conventions, chosen so that NumPy never copies on the hot path:
!   * arrays are declared fastest index first; the Python side passes
!     transposed views of its C-ordered arrays (``vectors.T`` is (3, n)) and
!     reads ``out.T`` back as a C-ordered array;
!   * dummy-argument kinds come from iso_c_binding (f2py maps them itself);
!   * every routine is ``threadsafe``: f2py releases the GIL around the call;
!   * sizes are hidden and taken from the arrays; the Python wrappers check
!     every index array against those sizes before the call;
!   * outputs are intent(inout) arrays the caller allocates (see
!     atomdesc.kernel_inputs.kernel_outputs), their sizes hidden and taken
!     from them: an intent(out) array would be memset by f2py and then
!     written again. ACSF takes them zeroed by np.zeros (calloc gives untouched
!     zero pages) and only adds to them; SOAP takes them from np.empty and
!     writes every element, zeroing each per-centre slot just before it adds
!     to it.
module kernels
  use, intrinsic :: iso_c_binding, only: c_double, c_int
  use acsf_kernel, only: acsf_centres
  use soap_kernel, only: soap_centres, soap_invariants_of
  use neighbour_lists, only: expand_half_list
  use atomdesc_pages, only: clear_if_written
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
  !> with strain(f, y, x, i) = dG_f(i) / d eps_xy, all zero on entry (added to).
  !> Pass nslots = 0 / nsc = 0 to skip.
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
    !f2py integer intent(hide), depend(feat) :: nf = shape(feat, 0)
    !f2py integer intent(hide), depend(grad) :: nslots = shape(grad, 2)
    !f2py integer intent(hide), depend(strain) :: nsc = shape(strain, 3)
    integer(c_int), intent(in) :: nc, ne, n2, n3, n4, n5, ntab, npar, nf, nslots, nsc
    integer(c_int), intent(in) :: nbr_start(nc + 1), nbr_species(ne), nbr_slot(ne)
    integer(c_int), intent(in) :: centre_slot(nc), slot_start(nc + 1)
    real(c_double), intent(in) :: vec(3, ne), dist(ne)
    real(c_double), intent(in) :: g2(2, n2), g3(n3), g4(3, n4), g5(3, n5)
    real(c_double), intent(in) :: rc, cpar(npar), ctab(2, ntab), pair_factor
    integer(c_int), intent(in) :: ckind, nspecies, nthreads
    logical, intent(in) :: want_grad, want_strain
    real(c_double), intent(inout) :: feat(nf, nc), grad(nf, 3, nslots), strain(nf, 3, 3, nsc)

    call acsf_centres(nbr_start, vec, dist, nbr_species, nbr_slot, centre_slot, slot_start, &
                      g2, g3, g4, g5, rc, ckind, cpar, ctab, nspecies, pair_factor, &
                      want_grad .and. nslots > 0, want_strain .and. nsc > 0, nthreads, &
                      feat, grad, strain)
  end subroutine acsf


  !> SOAP family: kind 0 = spherical expansion, 1 = power spectrum, 2 = bispectrum.
  !> feat(nf, nc); grad(nf, 3, nslots); strain(nf, 3, 3, nsc), strain(f, y, x, i) =
  !> dF_f(i) / d eps_xy, every element written (their contents on entry are never
  !> read), or with zeroed all zero on entry and only the features of
  !> channels present around each centre written. nf must be the number of columns
  !> of fmap (kind 1, 2) or of the coefficients (kind 0); pass nslots = 0 / nsc = 0
  !> to skip. star: 0, or the channel (kind 1 only, none of chan's) that is the sum of
  !> all the others (compression mu1nu1). With zeroed, the pages of centre i's strain
  !> that recycled memory may leave non-zero are still to clear: page_words long at the
  !> word offsets dirty(dirty_start(i) + 1:dirty_start(i + 1)) from strain(1, 1, 1, i),
  !> each inside it (output_memory.untouched_zero_rows; the caller checks the bounds).
  !> keys, feature_keys, channel_keys_start and channel_keys: the bispectrum's adjoint
  !> keys (kind 2 only; plugins/soap.py, Bispectrum._build_adjoint_keys), feature_keys
  !> with a column for each of the nf features.
  !> See soap.f90 for the radial table and the feature map.
  subroutine soap(kind, nbr_start, vec, dist, nbr_species, nbr_slot, centre_slot, slot_start, &
                  centre_species, chan, sw, self_c, rtab, rgrid, rmax, lmax, nmax, nchan, star, &
                  fmap, ffac, ct_start, ct_m, ct_val, keys, feature_keys, channel_keys_start, &
                  channel_keys, want_grad, want_strain, zeroed, dirty, &
                  dirty_start, page_words, nthreads, feat, grad, strain, nf, nslots, nsc, nc, ne, &
                  nsp, nfun, ntab, ngrid, nmap, nfm, nt1, nnz, ndirty, nkey, nfk, nck1, nck)
    !f2py threadsafe
    !f2py integer intent(hide), depend(centre_slot) :: nc = len(centre_slot)
    !f2py integer intent(hide), depend(dist) :: ne = len(dist)
    !f2py integer intent(hide), depend(chan) :: nsp = len(chan)
    !f2py integer intent(hide), depend(rtab) :: nfun = shape(rtab, 0)
    !f2py integer intent(hide), depend(rtab) :: ntab = shape(rtab, 2)
    !f2py integer intent(hide), depend(rgrid) :: ngrid = len(rgrid)
    !f2py integer intent(hide), depend(fmap) :: nmap = shape(fmap, 0)
    !f2py integer intent(hide), depend(fmap) :: nfm = shape(fmap, 1)
    !f2py integer intent(hide), depend(ct_start) :: nt1 = len(ct_start)
    !f2py integer intent(hide), depend(ct_val) :: nnz = len(ct_val)
    !f2py integer intent(hide), depend(feat) :: nf = shape(feat, 0)
    !f2py integer intent(hide), depend(grad) :: nslots = shape(grad, 2)
    !f2py integer intent(hide), depend(strain) :: nsc = shape(strain, 3)
    !f2py integer intent(hide), depend(dirty) :: ndirty = len(dirty)
    !f2py integer intent(hide), depend(keys) :: nkey = shape(keys, 1)
    !f2py integer intent(hide), depend(feature_keys) :: nfk = shape(feature_keys, 1)
    !f2py integer intent(hide), depend(channel_keys_start) :: nck1 = len(channel_keys_start)
    !f2py integer intent(hide), depend(channel_keys) :: nck = len(channel_keys)
    integer(c_int), intent(in) :: nkey, nfk, nck1, nck
    integer(c_int), intent(in) :: keys(9, nkey), feature_keys(3, nfk), channel_keys_start(nck1)
    integer(c_int), intent(in) :: channel_keys(nck)
    integer(c_int), intent(in) :: nc, ne, nsp, nfun, ntab, ngrid, nmap, nfm, nt1, nnz, nf, nslots
    integer(c_int), intent(in) :: nsc, ndirty, kind, lmax, nmax, nchan, star, nthreads, page_words
    integer(8), intent(in) :: dirty(ndirty), dirty_start(nsc + 1)
    integer(c_int), intent(in) :: nbr_start(nc + 1), nbr_species(ne), nbr_slot(ne)
    integer(c_int), intent(in) :: centre_slot(nc), slot_start(nc + 1), centre_species(nc)
    integer(c_int), intent(in) :: chan(nsp), fmap(nmap, nfm), ct_start(nt1), ct_m(3, nnz)
    real(c_double), intent(in) :: vec(3, ne), dist(ne), sw(nsp), self_c(nmax)
    real(c_double), intent(in) :: rtab(nfun, 2, ntab), rgrid(ngrid), rmax, ffac(nfm), ct_val(nnz)
    logical, intent(in) :: want_grad, want_strain, zeroed
    real(c_double), intent(inout) :: feat(nf, nc), grad(nf, 3, nslots), strain(nf, 3, 3, nsc)

    call soap_centres(kind, nbr_start, vec, dist, nbr_species, nbr_slot, centre_slot, &
                      slot_start, centre_species, chan, sw, self_c, rtab, rgrid, rmax, lmax, &
                      nmax, nchan, star, fmap, ffac, ct_start, ct_m, ct_val, keys, feature_keys, &
                      channel_keys_start, channel_keys, want_grad .and. nslots > 0, &
                      want_strain .and. nsc > 0, zeroed, dirty, dirty_start, page_words, &
                      nthreads, feat, grad, strain)
  end subroutine soap

  !> Invariants (kind 1, 2) of given coefficients c(nlm, nmax, nchan) and their
  !> derivatives from dc(nlm, nmax, nchan, 3, ns) and dcs(nlm, nmax, nchan, 3, 3):
  !> feat(nf), grad(nf, 3, ns), strain(nf, 3, 3, 1), every element written; without
  !> gradients or strain pass a grad or strain of size 0 (f2py refuses an empty dc
  !> or dcs, so their sizes are separate). nf must be the number of columns of fmap
  !> and (kind 2) of feature_keys; keys and feature_keys as for soap.
  subroutine soap_invariants(kind, c, dc, dcs, fmap, ffac, ct_start, ct_m, ct_val, &
                             keys, feature_keys, want_grad, want_strain, feat, grad, strain, &
                             nf, nlm, nmax, nchan, nsd, ns, nss, nst, nmap, nfm, nt1, nnz, &
                             nkey, nfk)
    !f2py threadsafe
    !f2py integer intent(hide), depend(c) :: nlm = shape(c, 0)
    !f2py integer intent(hide), depend(c) :: nmax = shape(c, 1)
    !f2py integer intent(hide), depend(c) :: nchan = shape(c, 2)
    !f2py integer intent(hide), depend(dc) :: nsd = shape(dc, 4)
    !f2py integer intent(hide), depend(grad) :: ns = shape(grad, 2)
    !f2py integer intent(hide), depend(dcs) :: nss = shape(dcs, 4)
    !f2py integer intent(hide), depend(fmap) :: nmap = shape(fmap, 0)
    !f2py integer intent(hide), depend(fmap) :: nfm = shape(fmap, 1)
    !f2py integer intent(hide), depend(ct_start) :: nt1 = len(ct_start)
    !f2py integer intent(hide), depend(ct_val) :: nnz = len(ct_val)
    !f2py integer intent(hide), depend(feat) :: nf = len(feat)
    !f2py integer intent(hide), depend(strain) :: nst = shape(strain, 3)
    !f2py integer intent(hide), depend(keys) :: nkey = shape(keys, 1)
    !f2py integer intent(hide), depend(feature_keys) :: nfk = shape(feature_keys, 1)
    integer(c_int), intent(in) :: kind, nf, nlm, nmax, nchan, nsd, ns, nss, nst, nmap, nfm, nt1, nnz
    integer(c_int), intent(in) :: nkey, nfk, keys(9, nkey), feature_keys(3, nfk)
    real(c_double), intent(in) :: c(nlm, nmax, nchan), dc(nlm, nmax, nchan, 3, nsd)
    real(c_double), intent(in) :: dcs(nlm, nmax, nchan, 3, nss), ffac(nfm), ct_val(nnz)
    integer(c_int), intent(in) :: fmap(nmap, nfm), ct_start(nt1), ct_m(3, nnz)
    logical, intent(in) :: want_grad, want_strain
    real(c_double), intent(inout) :: feat(nf), grad(nf, 3, ns), strain(nf, 3, 3, nst)

    call soap_invariants_of(kind, c, dc, dcs, fmap, ffac, ct_start, ct_m, ct_val, keys, &
                            feature_keys, want_grad .and. ns == nsd, &
                            want_strain .and. nss == 3 .and. nst == 1, feat, grad, strain)
  end subroutine soap_invariants

  !> Full neighbour list of selected centres from a half list (see neighbours.f90).
  !> pairs(:, p) = (i, j) 0-based and hs(:, p) = S of pair p (vesin's "P" and "S"),
  !> box(:, k) the k-th cell vector; row(a) = 1-based row of atom a, 0 if it is
  !> not a centre (each atom one row at most); atom_label(a) is copied to the
  !> label of every entry whose neighbour is a. Pairs with |r| >= cut are dropped.
  !> Output (caller-allocated, at least the number of entries long): start(nc + 1)
  !> 0-based row offsets, atoms (0-based), vec(3, :), dist, shifts(3, :), label.
  !> nkept = pairs kept; (amin, bmin) = the closest kept pair (0-based, amin <= bmin)
  !> at dmin; status 0 = ok, 1 = an index out of range, 2 = outputs too short,
  !> 3 = inconsistent sizes. nthreads: OpenMP threads (<= 0: the default; 1 when
  !> omitted), fewer for short lists; the output does not depend on it.
  subroutine half_to_full(pos, box, pairs, hs, row, atom_label, cut, start, atoms, vec, dist, &
                          shifts, label, nthreads, nkept, dmin, amin, bmin, status, n, nh, nc1, ne)
    !f2py threadsafe
    !f2py integer optional, intent(in) :: nthreads = 1
    !f2py integer intent(hide), depend(pos) :: n = shape(pos, 1)
    !f2py integer intent(hide), depend(pairs) :: nh = shape(pairs, 1)
    !f2py integer intent(hide), depend(start) :: nc1 = len(start)
    !f2py integer intent(hide), depend(dist) :: ne = len(dist)
    integer(c_int), intent(in) :: n, nh, nc1, ne, nthreads
    real(c_double), intent(in) :: pos(3, n), box(3, 3), cut
    integer(8), intent(in) :: pairs(2, nh)
    integer(c_int), intent(in) :: hs(3, nh), row(n), atom_label(n)
    integer(8), intent(inout) :: start(nc1), atoms(ne), shifts(3, ne)
    real(c_double), intent(inout) :: vec(3, ne), dist(ne)
    integer(c_int), intent(inout) :: label(ne)
    integer(8), intent(out) :: nkept, amin, bmin
    real(c_double), intent(out) :: dmin
    integer(c_int), intent(out) :: status

    call expand_half_list(pos, box, pairs, hs, row, atom_label, cut, nthreads, start, atoms, &
                          vec, dist, shifts, label, nkept, dmin, amin, bmin, status)
  end subroutine half_to_full

  !> Zero those of the listed pages of x that hold a non-zero bit: words
  !> pages(k) * page_words + 1 .. + page_words (pages 0-based), with nthreads OpenMP
  !> threads (<= 0: the default). For the reuse of a zeroed output's memory: of the
  !> pages the system holds, those only read still map its shared zero page, and
  !> writing them would make them memory of their own. status 1 (nothing written) if
  !> a page is out of range.
  subroutine clear_pages(x, pages, page_words, nthreads, status, n, np)
    !$ use omp_lib, only: omp_get_max_threads
    !f2py threadsafe
    !f2py integer intent(hide), depend(x) :: n = len(x)
    !f2py integer intent(hide), depend(pages) :: np = len(pages)
    integer(8), intent(in) :: n
    integer(c_int), intent(in) :: np, page_words, nthreads
    integer(8), intent(inout) :: x(n)
    integer(8), intent(in) :: pages(np)
    integer(c_int), intent(out) :: status
    integer :: k, nt
    integer(8) :: lo

    status = 1
    if (page_words <= 0) return
    if (np > 0) then
      if (minval(pages) < 0 .or. (maxval(pages) + 1) * page_words > n) return
    end if
    nt = 1
    !$ nt = nthreads
    !$ if (nt <= 0) nt = omp_get_max_threads()
    !$omp parallel do num_threads(nt) schedule(static) private(lo) if(np > 1024)
    do k = 1, np
      lo = pages(k) * page_words
      call clear_if_written(page_words, x(lo + 1:lo + page_words))
    end do
    !$omp end parallel do
    status = 0
  end subroutine clear_pages

end module kernels
