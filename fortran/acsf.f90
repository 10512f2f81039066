! Behler-Parrinello atom-centred symmetry functions G1-G5 (SCIENCE.md 2.2)
! with analytic derivatives with respect to positions and homogeneous strain.
!
! Input is a neighbour list in CSR form: the entries nbr_start(i)+1 ..
! nbr_start(i+1) belong to centre i, each with its vector r_ij = r_j - r_i
! (periodic images are separate entries), its species (1-based) and its
! gradient slot. Slots are (centre, atom) pairs numbered by the caller; a
! centre owns the contiguous slots slot_start(i)+1 .. slot_start(i+1), so
! centres never write to the same memory and results do not depend on the
! number of threads.
!
! feat, grad and strain are zero on entry (the caller allocates them zeroed, so
! that memory no centre writes is never touched) and are only added to.
!
! Feature layout (DScribe's): for each neighbour species s, [G1, G2(:), G3(:)];
! then for each unordered species pair (a <= b), [G4(:), G5(:)], pairs ordered
! by b, then a: (1,1), (1,2), (2,2), (1,3), (2,3), (3,3), ...
!
! Speed: a centre's neighbours are copied into species-sorted local arrays.
! Features are computed over all of a centre's entries (radial) or pairs
! (angular, in chunks of up to PAIR_CHUNK pairs) at once, each quantity one
! long vector that the compiler vectorises (including exp and cos), then added
! to the columns of each entry's species (pair) in order: with many species and
! few neighbours (molecules), a species or species pair has only 1-2 entries.
! Derivatives loop over j and the block of partners k of one species, so that
! the k-updates are contiguous. exp(-eta r^2) factors are computed once per
! distinct eta, not per function.
module acsf_kernel
  use, intrinsic :: iso_c_binding, only: c_int
  use atomdesc_cutoffs, only: dp, cutoff_array
  implicit none
  private
  public :: acsf_centres

  integer, parameter :: N_SCRATCH = 15   ! per-pair work vectors of angular_block
  integer, parameter :: N_PAIR_WORK = 9   ! per-pair work vectors of pair_geometry, pair_features
  !> Pairs whose angular features are computed together: long enough vectors,
  !> small enough to stay in cache.
  integer, parameter :: PAIR_CHUNK = 256
  !> Vector loops over entries or pairs run to a multiple of this (padded with
  !> copies of the first): no scalar remainder iterations, which matter with a
  !> handful of neighbours, and every entry takes the same (SIMD) exp and cos.
  integer, parameter :: PAD = 4

  !> G4 or G5 parameters with what is hoisted out of the pair loops.
  type :: angular_functions
    integer :: n = 0
    real(dp), allocatable :: eta(:), zeta(:), lam(:), pref(:)
    integer, allocatable :: ieta(:)    ! index of eta among the distinct etas
    real(dp), allocatable :: etas(:)   ! the distinct etas
    integer, allocatable :: izl(:)     ! index of (zeta, lambda) among the distinct pairs
    real(dp), allocatable :: zl(:, :)  ! the distinct (zeta, lambda) pairs
    integer, allocatable :: zint(:)    ! their zeta when an integer <= 64, else 0
  end type angular_functions

  !> Per-thread work arrays, sized for the largest neighbourhood. Passed
  !> explicitly: OpenMP privatisation does not reach host-associated variables.
  type :: workspace
    integer, allocatable :: order(:), sp(:), block_start(:), runs(:, :)
    integer, allocatable :: pos(:), present(:)   ! counting sort; the species present
    integer :: npresent
    real(dp), allocatable :: r(:, :), d(:), fc(:), dfc(:), e4(:, :), e5(:, :)
    real(dp), allocatable :: rad(:, :), drad(:, :), dge(:, :, :), scratch(:, :), powers(:, :, :)
    integer, allocatable :: pj(:), pk(:), pcol(:)       ! a chunk of pairs j < k, their column base
    real(dp), allocatable :: pwork(:, :), pav(:, :), pterm(:, :)
  end type workspace

contains

  subroutine acsf_centres(nbr_start, vec, dist, nbr_species, nbr_slot, centre_slot, slot_start, &
                          g2, g3, g4, g5, rc, ckind, cpar, ctab, nspecies, pair_factor, &
                          want_grad, want_strain, nthreads, feat, grad, strain)
    !$ use omp_lib, only: omp_get_max_threads
    integer(c_int), intent(in) :: nbr_start(:), nbr_species(:), nbr_slot(:), centre_slot(:)
    integer(c_int), intent(in) :: slot_start(:)
    real(dp), intent(in) :: vec(:, :), dist(:)
    real(dp), intent(in) :: g2(:, :), g3(:), g4(:, :), g5(:, :)
    real(dp), intent(in) :: rc, cpar(:), ctab(:, :), pair_factor
    integer(c_int), intent(in) :: ckind, nspecies, nthreads
    logical, intent(in) :: want_grad, want_strain
    real(dp), intent(inout) :: feat(:, :), grad(:, :, :), strain(:, :, :, :)

    integer :: nc, n2, n3, nrad, nang, nf, maxn, npair, nt, ic
    type(angular_functions) :: a4, a5
    logical :: derivs

    nc = size(centre_slot)
    n2 = size(g2, 2); n3 = size(g3)
    a4 = angular_set(g4, pair_factor)
    a5 = angular_set(g5, pair_factor)
    nrad = 1 + n2 + n3
    nang = a4%n + a5%n
    nf = size(feat, 1)
    derivs = want_grad .or. want_strain
    if (nc == 0) return
    maxn = padded(max(1, maxval(nbr_start(2:nc + 1) - nbr_start(1:nc))))
    npair = max(PAIR_CHUNK, maxn)   ! a chunk holds at least one j's partners

    nt = nthreads
    if (nt <= 0) then
      ! default: all threads, but not for a handful of centres, where waking
      ! the thread team costs more than the work
      nt = 1
      !$ nt = max(1, min(omp_get_max_threads(), nc / 16))
    end if

    !$omp parallel num_threads(nt) default(shared) private(ic)
    block
      type(workspace) :: w
      allocate (w%order(maxn), w%sp(maxn), w%block_start(nspecies + 1), w%runs(2, nf))
      allocate (w%pos(nspecies), w%present(nspecies))
      allocate (w%r(maxn, 3), w%d(maxn), w%fc(maxn), w%dfc(maxn))
      allocate (w%rad(maxn, nrad), w%drad(maxn, nrad))
      allocate (w%e4(maxn, size(a4%etas)), w%e5(maxn, size(a5%etas)))
      allocate (w%dge(maxn, 3, nf), w%scratch(maxn, N_SCRATCH))
      allocate (w%powers(maxn, 3, max(size(a4%zl, 2), size(a5%zl, 2))))
      allocate (w%pj(npair + PAD), w%pk(npair + PAD), w%pcol(npair))
      allocate (w%pwork(npair + PAD, N_PAIR_WORK), w%pterm(max(a4%n, a5%n), npair + PAD))
      allocate (w%pav(npair + PAD, max(size(a4%zl, 2), size(a5%zl, 2))))
      !$omp do schedule(dynamic, 1)
      do ic = 1, nc
        call one_centre(w, ic)
      end do
      !$omp end do
      ! Explicitly: gfortran 12 does not free the allocatable components of a
      ! BLOCK-local variable inside a parallel region (a leak on every call).
      deallocate (w%order, w%sp, w%block_start, w%runs, w%pos, w%present, w%r, w%d, w%fc, w%dfc, w%rad, w%drad, &
                  w%e4, w%e5, w%dge, w%scratch, w%powers, w%pj, w%pk, w%pcol, w%pwork, w%pav, &
                  w%pterm)
    end block
    !$omp end parallel

  contains

    !> Features (and derivatives) of centre ic. Host-associated work arrays
    !> belong to the calling thread.
    subroutine one_centre(w, ic)
      type(workspace), intent(inout) :: w
      integer, intent(in) :: ic
      integer :: s0, nn, nv, e, x, y, slot, k, f0, f1, nrun, u
      associate (order => w%order, r => w%r, d => w%d, fc => w%fc, dfc => w%dfc, dge => w%dge)

      s0 = nbr_start(ic)
      nn = nbr_start(ic + 1) - s0
      nv = padded(nn)
      nrun = 0
      if (nn > 0) then
        call gather_sorted(w, s0, nn)
        ! Only the columns of species present around the centre can be non-zero:
        ! with many species that is a small part of the row.
        call present_columns(w, nrun)
        call cutoff_array(ckind, d(1:nv), rc, cpar, ctab, fc(1:nv), dfc(1:nv), derivs)
        if (derivs) then
          do k = 1, nrun
            dge(1:nn, :, w%runs(1, k):w%runs(2, k)) = 0.0_dp
          end do
        end if
        call radial_terms(w, ic, nn, nv)
        if (nang > 0) then
          do u = 1, size(a4%etas)
            w%e4(1:nv, u) = exp(-a4%etas(u) * d(1:nv)**2)
          end do
          do u = 1, size(a5%etas)
            w%e5(1:nv, u) = exp(-a5%etas(u) * d(1:nv)**2)
          end do
          ! With derivatives, the features come with them (sums in the same order,
          ! but exp and cos may round differently in another vector position).
          if (derivs) then
            call angular_derivatives(w, ic, nn)
          else
            call angular_features(w, ic)
          end if
        end if
      end if

      if (want_grad) then
        do e = 1, nn
          slot = nbr_slot(s0 + order(e))
          do x = 1, 3
            do k = 1, nrun
              f0 = w%runs(1, k); f1 = w%runs(2, k)
              grad(f0:f1, x, slot) = grad(f0:f1, x, slot) + dge(e, x, f0:f1)
              grad(f0:f1, x, centre_slot(ic)) = grad(f0:f1, x, centre_slot(ic)) - dge(e, x, f0:f1)
            end do
          end do
        end do
      end if
      if (want_strain) then
        ! d G / d eps_xy = sum_e (dG/dr_e)_x (r_e)_y, stored as strain(:, y, x, ic)
        do e = 1, nn
          do x = 1, 3
            do y = 1, 3
              do k = 1, nrun
                f0 = w%runs(1, k); f1 = w%runs(2, k)
                strain(f0:f1, y, x, ic) = strain(f0:f1, y, x, ic) + dge(e, x, f0:f1) * r(e, y)
              end do
            end do
          end do
        end do
      end if
      end associate
    end subroutine one_centre

    !> The feature columns that the species present can reach, as ascending ranges
    !> w%runs(1, k) .. w%runs(2, k), adjacent ones merged (one species: a single
    !> range over the whole row).
    subroutine present_columns(w, nrun)
      type(workspace), intent(inout) :: w
      integer, intent(out) :: nrun
      integer :: a, b, sa, sb
      nrun = 0
      do a = 1, w%npresent
        sa = w%present(a)
        call add_run(w%runs, nrun, (sa - 1) * nrad + 1, sa * nrad)
      end do
      if (nang == 0) return
      do b = 1, w%npresent
        sb = w%present(b)
        do a = 1, b
          sa = w%present(a)
          call add_run(w%runs, nrun, pair_column(sa, sb) + 1, pair_column(sa, sb) + nang)
        end do
      end do
    end subroutine present_columns

    !> The column before the G4, G5 block of species pair sa <= sb (DScribe's order).
    pure integer function pair_column(sa, sb)
      integer, intent(in) :: sa, sb
      pair_column = nspecies * nrad + ((sb * (sb - 1)) / 2 + sa - 1) * nang
    end function pair_column

    !> Copy the centre's entries into local arrays sorted by species (counting sort),
    !> padded to a multiple of PAD with copies of the first; list the species present.
    subroutine gather_sorted(w, s0, nn)
      type(workspace), intent(inout) :: w
      integer, intent(in) :: s0, nn
      integer :: e, s
      associate (order => w%order, block_start => w%block_start, pos => w%pos)
      block_start = 0
      do e = 1, nn
        s = nbr_species(s0 + e)
        block_start(s + 1) = block_start(s + 1) + 1
      end do
      do s = 1, nspecies
        block_start(s + 1) = block_start(s + 1) + block_start(s)
      end do
      pos = block_start(1:nspecies)
      do e = 1, nn
        s = nbr_species(s0 + e)
        pos(s) = pos(s) + 1
        order(pos(s)) = e
      end do
      do e = 1, nn
        w%r(e, :) = vec(:, s0 + order(e))
        w%d(e) = dist(s0 + order(e))
        w%sp(e) = nbr_species(s0 + order(e))
      end do
      do e = nn + 1, padded(nn)
        w%r(e, :) = w%r(1, :)
        w%d(e) = w%d(1)
      end do
      w%npresent = 0
      do s = 1, nspecies
        if (block_start(s + 1) > block_start(s)) then
          w%npresent = w%npresent + 1
          w%present(w%npresent) = s
        end if
      end do
      end associate
    end subroutine gather_sorted

    !> G1, G2, G3 of all nn entries: each function a vector over the entries, then
    !> summed over each species' block of entries into its columns.
    subroutine radial_terms(w, ic, nn, nv)
      type(workspace), intent(inout) :: w
      integer, intent(in) :: ic, nn, nv   ! nv: nn padded
      integer :: e, e0, e1, kk, b, x, a, s
      real(dp) :: eta, rs, kappa
      associate (r => w%r, d => w%d, fc => w%fc, dfc => w%dfc, g => w%rad, dg => w%drad, &
                 dge => w%dge)
      g(1:nn, 1) = fc(1:nn)
      dg(1:nn, 1) = dfc(1:nn)
      do kk = 1, n2
        eta = g2(1, kk); rs = g2(2, kk)
        do e = 1, nv
          g(e, 1 + kk) = exp(-eta * (d(e) - rs)**2)
          dg(e, 1 + kk) = g(e, 1 + kk) * (dfc(e) - 2.0_dp * eta * (d(e) - rs) * fc(e))
          g(e, 1 + kk) = g(e, 1 + kk) * fc(e)
        end do
      end do
      do kk = 1, n3
        kappa = g3(kk)
        do e = 1, nv
          g(e, 1 + n2 + kk) = cos(kappa * d(e))
          dg(e, 1 + n2 + kk) = g(e, 1 + n2 + kk) * dfc(e) - kappa * sin(kappa * d(e)) * fc(e)
          g(e, 1 + n2 + kk) = g(e, 1 + n2 + kk) * fc(e)
        end do
      end do
      do a = 1, w%npresent
        s = w%present(a)
        b = (s - 1) * nrad
        e0 = w%block_start(s) + 1
        e1 = w%block_start(s + 1)
        do kk = 1, nrad
          feat(b + kk, ic) = feat(b + kk, ic) + sum(g(e0:e1, kk))
        end do
      end do
      if (.not. derivs) return
      ! dge(e, :, f) = dG/dR(e) * r_e / R_e
      do e = 1, nn
        b = (w%sp(e) - 1) * nrad
        do kk = 1, nrad
          do x = 1, 3
            dge(e, x, b + kk) = dge(e, x, b + kk) + dg(e, kk) * r(e, x) / d(e)
          end do
        end do
      end do
      end associate
    end subroutine radial_terms

    !> G4 and G5 features over every pair j < k of the species-sorted entries, pairs
    !> grouped by species pair (then by j, then k), in chunks of whole k-blocks.
    subroutine angular_features(w, ic)
      type(workspace), intent(inout) :: w
      integer, intent(in) :: ic
      integer :: a, bb, sa, sb, j, k, k0, k1, np, b
      associate (block_start => w%block_start)
      np = 0
      do bb = 1, w%npresent
        sb = w%present(bb)
        do a = 1, bb
          sa = w%present(a)
          b = pair_column(sa, sb)
          k1 = block_start(sb + 1)
          do j = block_start(sa) + 1, block_start(sa + 1)
            k0 = max(j + 1, block_start(sb) + 1)
            if (np + k1 - k0 + 1 > npair) then
              call flush_pairs(w, ic, np)
              np = 0
            end if
            do k = k0, k1
              np = np + 1
              w%pj(np) = j; w%pk(np) = k; w%pcol(np) = b
            end do
          end do
        end do
      end do
      call flush_pairs(w, ic, np)
      end associate
    end subroutine angular_features

    !> Add the G4 and G5 terms of the np pairs in w%pj, w%pk to the features of centre ic.
    subroutine flush_pairs(w, ic, np)
      type(workspace), intent(inout) :: w
      integer, intent(in) :: ic, np
      integer :: nv
      if (np == 0) return
      nv = padded(np)
      w%pj(np + 1:nv) = 1
      w%pk(np + 1:nv) = 1
      call pair_geometry(nv, w%pj, w%pk, maxn, w%r, w%d, w%fc, size(w%pj), w%pwork)
      if (a4%n > 0) call pair_features(a4, .true., np, nv, w%pj, w%pk, w%pcol, maxn, w%d, &
                                       w%e4, rc, ckind, cpar, ctab, nf, feat(:, ic), 0, &
                                       size(w%pj), w%pwork, w%pav, w%pterm)
      if (a5%n > 0) call pair_features(a5, .false., np, nv, w%pj, w%pk, w%pcol, maxn, w%d, &
                                       w%e5, rc, ckind, cpar, ctab, nf, feat(:, ic), a4%n, &
                                       size(w%pj), w%pwork, w%pav, w%pterm)
    end subroutine flush_pairs

    !> G4 and G5 with their derivatives over the unique pairs j < k of the
    !> species-sorted entries, for each j a block of partners k of one species at a time.
    subroutine angular_derivatives(w, ic, nn)
      type(workspace), intent(inout) :: w
      integer, intent(in) :: ic, nn
      integer :: j, s, k0, k1, b
      associate (sp => w%sp, block_start => w%block_start)
      do j = 1, nn - 1
        do s = sp(j), nspecies
          k0 = max(j + 1, block_start(s) + 1)
          k1 = block_start(s + 1)
          if (k1 < k0) cycle
          b = pair_column(sp(j), s)
          if (a4%n > 0) call angular_block(a4, .true., j, k0, k1 - k0 + 1, maxn, w%r, w%d, &
                                           w%fc, w%dfc, w%e4, rc, ckind, cpar, ctab, nf, &
                                           feat(:, ic), b, w%dge, w%scratch, w%powers)
          if (a5%n > 0) call angular_block(a5, .false., j, k0, k1 - k0 + 1, maxn, w%r, w%d, &
                                           w%fc, w%dfc, w%e5, rc, ckind, cpar, ctab, nf, &
                                           feat(:, ic), b + a4%n, w%dge, w%scratch, w%powers)
        end do
      end do
      end associate
    end subroutine angular_derivatives

  end subroutine acsf_centres

  !> The G4 (with_jk) or G5 functions of the species-sorted neighbour j with
  !> neighbours k0 .. k0+m-1 (all of one species) and their derivatives: adds to
  !> g(f0+1:f0+a%n), and dG/dr of j and of each k to dge(:, :, f0+1:f0+a%n).
  !> Explicit-shape arrays and k-innermost loops let the compiler vectorise.
  pure subroutine angular_block(a, with_jk, j, k0, m, ld, r, d, fc, dfc, e, rc, ckind, &
                                cpar, ctab, nf, g, f0, dge, scratch, powers)
    type(angular_functions), intent(in) :: a
    logical, intent(in) :: with_jk
    integer, intent(in) :: j, k0, m, ld, ckind, nf, f0
    real(dp), intent(in) :: r(ld, 3), d(ld), fc(ld), dfc(ld), e(ld, size(a%etas))
    real(dp), intent(in) :: rc, cpar(:), ctab(:, :)
    real(dp), intent(inout) :: g(nf), dge(ld, 3, nf)
    ! work space from the caller (automatic arrays would be a malloc per call)
    real(dp), intent(inout) :: scratch(ld, N_SCRATCH), powers(ld, 3, size(a%zl, 2))
    real(dp) :: dj, dot, eta, zeta, lam, e2, e4
    integer :: k, kk, q, u, x, f, z

    associate (c => scratch(1:m, 1), rjk2 => scratch(1:m, 2), djk => scratch(1:m, 3), &
               fcjk => scratch(1:m, 4), dfcjk => scratch(1:m, 5), eu => scratch(1:m, 6), &
               wu => scratch(1:m, 7), ff => scratch(1:m, 8), dfj => scratch(1:m, 9), &
               dfk => scratch(1:m, 10), dfjk => scratch(1:m, 11), pp => scratch(1:m, 12), &
               cjj => scratch(1:m, 13), cjk => scratch(1:m, 14), ckk => scratch(1:m, 15), &
               base => powers(1:m, 1, :), a1 => powers(1:m, 2, :), av => powers(1:m, 3, :))

    dj = d(j)
    do k = 1, m
      kk = k0 + k - 1
      dot = r(j, 1) * r(kk, 1) + r(j, 2) * r(kk, 2) + r(j, 3) * r(kk, 3)
      rjk2(k) = max(dj * dj + d(kk) * d(kk) - 2.0_dp * dot, 0.0_dp)
      c(k) = max(-1.0_dp, min(1.0_dp, dot / (dj * d(kk))))
    end do
    if (with_jk) then
      djk = sqrt(rjk2)
      call cutoff_array(ckind, djk, rc, cpar, ctab, fcjk, dfcjk, .true.)
    else
      djk = 1.0_dp; fcjk = 1.0_dp; dfcjk = 0.0_dp
    end if
    do k = 1, m
      ff(k) = fc(j) * fc(k0 + k - 1) * fcjk(k)
    end do
    ! (1 + lambda cos)^zeta once per distinct (zeta, lambda), shared by all etas
    do z = 1, size(a%zl, 2)
      call angular_power(a%zl(1, z), a%zint(z), a%zl(2, z), c, base(:, z), a1(:, z))
      av(:, z) = a1(:, z) * base(:, z)
    end do
    do k = 1, m
      kk = k0 + k - 1
      dfj(k) = dfc(j) * fc(kk) * fcjk(k) / dj
      dfk(k) = fc(j) * dfc(kk) * fcjk(k) / d(kk)
      dfjk(k) = fc(j) * fc(kk) * dfcjk(k) / djk(k)
    end do

    do u = 1, size(a%etas)
      ! radial factor exp(-eta (R_j^2 + R_k^2 [+ R_jk^2])) once per distinct eta
      if (with_jk) then
        eu = e(j, u) * e(k0:k0 + m - 1, u) * exp(-a%etas(u) * rjk2)
      else
        eu = e(j, u) * e(k0:k0 + m - 1, u)
      end if
      wu = eu * ff
      do q = 1, a%n
        if (a%ieta(q) /= u) cycle
        z = a%izl(q)
        f = f0 + q
        g(f) = g(f) + a%pref(q) * sum(wu * av(:, z))
        eta = a%eta(q); zeta = a%zeta(q); lam = a%lam(q)
        ! d/dr_j of the radial factor: -e4 eta r_j + e2 eta r_k
        e2 = merge(2.0_dp * eta, 0.0_dp, with_jk)
        e4 = merge(4.0_dp * eta, 2.0_dp * eta, with_jk)
        do k = 1, m
          kk = k0 + k - 1
          pp(k) = a%pref(q) * eu(k)
          cjk(k) = pp(k) * (zeta * lam * a1(k, z) * ff(k) / (dj * d(kk)) &
                            + e2 * av(k, z) * ff(k) - av(k, z) * dfjk(k))
          cjj(k) = pp(k) * (-zeta * lam * a1(k, z) * ff(k) * c(k) / (dj * dj) &
                            - e4 * av(k, z) * ff(k) + av(k, z) * (dfj(k) + dfjk(k)))
          ckk(k) = pp(k) * (-zeta * lam * a1(k, z) * ff(k) * c(k) / (d(kk) * d(kk)) &
                            - e4 * av(k, z) * ff(k) + av(k, z) * (dfk(k) + dfjk(k)))
        end do
        ! dG/dr_j = cjj r_j + cjk r_k ;  dG/dr_k = cjk r_j + ckk r_k
        do x = 1, 3
          dge(j, x, f) = dge(j, x, f) + sum(cjj) * r(j, x) + sum(cjk * r(k0:k0 + m - 1, x))
          do k = 1, m
            kk = k0 + k - 1
            dge(kk, x, f) = dge(kk, x, f) + cjk(k) * r(j, x) + ckk(k) * r(kk, x)
          end do
        end do
      end do
    end do
    end associate
  end subroutine angular_block

  !> Per-pair quantities of the np pairs (pj(p), pk(p)) of species-sorted neighbours:
  !> work(:, 1) = cos theta_jk, 2 = R_jk^2, 3 = fc(R_j) fc(R_k).
  pure subroutine pair_geometry(np, pj, pk, ld, r, d, fc, ldp, work)
    integer, intent(in) :: np, ld, ldp, pj(ldp), pk(ldp)
    real(dp), intent(in) :: r(ld, 3), d(ld), fc(ld)
    real(dp), intent(inout) :: work(ldp, N_PAIR_WORK)
    integer :: p, j, k
    real(dp) :: dot
    do p = 1, np
      j = pj(p); k = pk(p)
      dot = r(j, 1) * r(k, 1) + r(j, 2) * r(k, 2) + r(j, 3) * r(k, 3)
      work(p, 2) = max(d(j) * d(j) + d(k) * d(k) - 2.0_dp * dot, 0.0_dp)
      work(p, 1) = max(-1.0_dp, min(1.0_dp, dot / (d(j) * d(k))))
      work(p, 3) = fc(j) * fc(k)
    end do
  end subroutine pair_geometry

  !> The G4 (with_jk) or G5 features of the first np of the nv (padded) pairs of
  !> pair_geometry: each pair's a%n terms are added to g(col(p)+f0+1 : col(p)+f0+a%n),
  !> pair after pair.
  pure subroutine pair_features(a, with_jk, np, nv, pj, pk, col, ld, d, e, rc, ckind, cpar, &
                                ctab, nf, g, f0, ldp, work, av, term)
    type(angular_functions), intent(in) :: a
    logical, intent(in) :: with_jk
    integer, intent(in) :: np, nv, ld, ckind, nf, f0, ldp, pj(ldp), pk(ldp), col(np)
    real(dp), intent(in) :: d(ld), e(ld, size(a%etas)), rc, cpar(:), ctab(:, :)
    real(dp), intent(inout) :: g(nf), work(ldp, N_PAIR_WORK), av(ldp, size(a%zl, 2))
    real(dp), intent(inout) :: term(a%n, ldp)   ! a pair's terms contiguous, for the sums
    integer :: p, q, u, z, b
    associate (c => work(1:nv, 1), rjk2 => work(1:nv, 2), fcfc => work(1:nv, 3), &
               fcjk => work(1:nv, 4), djk => work(1:nv, 5), ff => work(1:nv, 6), &
               eu => work(1:nv, 7), a1 => work(1:nv, 8), dfcjk => work(1:nv, 9))
    if (with_jk) then
      djk = sqrt(rjk2)
      call cutoff_array(ckind, djk, rc, cpar, ctab, fcjk, dfcjk, .false.)
      ff = fcfc * fcjk
    else
      ff = fcfc
    end if
    ! (1 + lambda cos)^zeta once per distinct (zeta, lambda), shared by all etas
    do z = 1, size(a%zl, 2)
      call angular_power(a%zl(1, z), a%zint(z), a%zl(2, z), c, av(1:nv, z), a1)
      av(1:nv, z) = a1 * av(1:nv, z)
    end do
    do u = 1, size(a%etas)
      ! radial factor exp(-eta (R_j^2 + R_k^2 [+ R_jk^2])) once per distinct eta
      if (with_jk) then
        do p = 1, nv
          eu(p) = e(pj(p), u) * e(pk(p), u) * exp(-a%etas(u) * rjk2(p))
        end do
      else
        do p = 1, nv
          eu(p) = e(pj(p), u) * e(pk(p), u)
        end do
      end if
      eu = eu * ff
      do q = 1, a%n
        if (a%ieta(q) == u) term(q, 1:nv) = a%pref(q) * (eu * av(1:nv, a%izl(q)))
      end do
    end do
    do p = 1, np
      b = col(p) + f0
      g(b + 1:b + a%n) = g(b + 1:b + a%n) + term(1:a%n, p)
    end do
    end associate
  end subroutine pair_features

  pure integer function padded(n)
    integer, intent(in) :: n
    padded = (n + PAD - 1) / PAD * PAD
  end function padded

  !> Append the column range first..last to runs(:, 1:nrun), merging it with the last
  !> range when they touch.
  pure subroutine add_run(runs, nrun, first, last)
    integer, intent(inout) :: runs(:, :), nrun
    integer, intent(in) :: first, last
    if (nrun > 0) then
      if (runs(2, nrun) + 1 == first) then
        runs(2, nrun) = last
        return
      end if
    end if
    nrun = nrun + 1
    runs(:, nrun) = [first, last]
  end subroutine add_run

  !> base = 1 + lam c and a1 = base**(zeta - 1), by repeated products for integer zeta
  !> (zint = zeta; exact, and finite at base = 0).
  pure subroutine angular_power(zeta, zint, lam, c, base, a1)
    real(dp), intent(in) :: zeta, lam, c(:)
    integer, intent(in) :: zint
    real(dp), intent(out) :: base(:), a1(:)
    integer :: i
    base = 1.0_dp + lam * c
    if (zint > 0) then
      a1 = 1.0_dp
      do i = 2, zint
        a1 = a1 * base
      end do
    else
      a1 = base**(zeta - 1.0_dp)
    end if
  end subroutine angular_power

  !> Hoist prefactors, integer zetas and distinct etas out of the pair loops.
  function angular_set(g, pair_factor) result(a)
    real(dp), intent(in) :: g(:, :), pair_factor
    type(angular_functions) :: a
    integer :: q, nu, nzl
    real(dp) :: etas(size(g, 2)), zl(2, size(g, 2))
    a%n = size(g, 2)
    allocate (a%eta(a%n), a%zeta(a%n), a%lam(a%n), a%pref(a%n), a%ieta(a%n))
    allocate (a%izl(a%n))
    nu = 0
    nzl = 0
    do q = 1, a%n
      a%eta(q) = g(1, q); a%zeta(q) = g(2, q); a%lam(q) = g(3, q)
      a%pref(q) = pair_factor * 2.0_dp**(1.0_dp - a%zeta(q))
      a%ieta(q) = findloc(etas(1:nu), a%eta(q), dim=1)
      if (a%ieta(q) == 0) then
        nu = nu + 1
        etas(nu) = a%eta(q)
        a%ieta(q) = nu
      end if
      a%izl(q) = 0
      if (nzl > 0) a%izl(q) = findloc(zl(1, 1:nzl) == a%zeta(q) .and. zl(2, 1:nzl) == a%lam(q), &
                                      .true., dim=1)
      if (a%izl(q) == 0) then
        nzl = nzl + 1
        zl(:, nzl) = [a%zeta(q), a%lam(q)]
        a%izl(q) = nzl
      end if
    end do
    a%etas = etas(1:nu)
    a%zl = zl(:, 1:nzl)
    a%zint = merge(nint(min(a%zl(1, :), 64.0_dp)), 0, &
                   a%zl(1, :) <= 64.0_dp .and. a%zl(1, :) == anint(a%zl(1, :)))
  end function angular_set

end module acsf_kernel
