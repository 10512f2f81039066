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
! Feature layout (DScribe's): for each neighbour species s, [G1, G2(:), G3(:)];
! then for each unordered species pair (a <= b), [G4(:), G5(:)], pairs ordered
! by b, then a: (1,1), (1,2), (2,2), (1,3), (2,3), (3,3), ...
module acsf_kernel
  use, intrinsic :: iso_c_binding, only: c_int
  use atomdesc_cutoffs, only: dp, cutoff_value
  implicit none
  private
  public :: acsf_centres

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

    integer :: nc, n2, n3, n4, n5, nrad, nang, nf, maxn, nt, ic, q
    real(dp), allocatable :: pref4(:), pref5(:)
    integer, allocatable :: izeta4(:), izeta5(:)

    nc = size(centre_slot)
    n2 = size(g2, 2); n3 = size(g3); n4 = size(g4, 2); n5 = size(g5, 2)
    nrad = 1 + n2 + n3
    nang = n4 + n5
    nf = size(feat, 1)
    if (nc == 0) return
    maxn = max(1, maxval(nbr_start(2:nc + 1) - nbr_start(1:nc)))

    ! 2^(1-zeta) with the pair-counting factor; integer zetas use integer powers.
    allocate (pref4(n4), pref5(n5), izeta4(n4), izeta5(n5))
    do q = 1, n4
      pref4(q) = pair_factor * 2.0_dp**(1.0_dp - g4(2, q))
      izeta4(q) = integer_or_zero(g4(2, q))
    end do
    do q = 1, n5
      pref5(q) = pair_factor * 2.0_dp**(1.0_dp - g5(2, q))
      izeta5(q) = integer_or_zero(g5(2, q))
    end do

    nt = nthreads
    if (nt <= 0) then
      nt = 1
      !$ nt = omp_get_max_threads()
    end if

    !$omp parallel num_threads(nt) default(shared) private(ic)
    block
      real(dp), allocatable :: fc(:), dfc(:), e4(:, :), e5(:, :), dge(:, :, :)
      allocate (fc(maxn), dfc(maxn), e4(n4, maxn), e5(n5, maxn))
      if (want_grad .or. want_strain) then
        allocate (dge(nf, 3, maxn))
      else
        allocate (dge(1, 1, 1))
      end if
      !$omp do schedule(dynamic, 1)
      do ic = 1, nc
        call one_centre(ic, fc, dfc, e4, e5, dge)
      end do
      !$omp end do
    end block
    !$omp end parallel

  contains

    subroutine one_centre(ic, fc, dfc, e4, e5, dge)
      integer, intent(in) :: ic
      real(dp), intent(inout) :: fc(:), dfc(:), e4(:, :), e5(:, :), dge(:, :, :)
      integer :: s0, nn, e, j, k, gj, gk, b, kk, p, a, sj, sk, x, y, slot
      logical :: derivs
      real(dp) :: r, u(3), xr, ex, d, cs, sn
      real(dp) :: rj(3), rk(3), rjk(3), dj, dk, djk, c, fcjk, dfcjk
      real(dp) :: eta, lam, zeta, base1, a1, av, ap, ee, ff, pp, val, af
      real(dp) :: dfj, dfk, dfjk, cjj, cjk, ckk

      derivs = want_grad .or. want_strain
      s0 = nbr_start(ic)
      nn = nbr_start(ic + 1) - s0
      feat(:, ic) = 0.0_dp
      if (derivs) dge(:, :, 1:nn) = 0.0_dp

      ! ---- radial terms G1, G2, G3 --------------------------------------
      do e = 1, nn
        r = dist(s0 + e)
        call cutoff_value(ckind, r, rc, cpar, ctab, fc(e), dfc(e))
        u = vec(:, s0 + e) / r
        b = (nbr_species(s0 + e) - 1) * nrad
        feat(b + 1, ic) = feat(b + 1, ic) + fc(e)
        if (derivs) dge(b + 1, :, e) = dge(b + 1, :, e) + dfc(e) * u
        do kk = 1, n2
          xr = r - g2(2, kk)
          ex = exp(-g2(1, kk) * xr * xr)
          feat(b + 1 + kk, ic) = feat(b + 1 + kk, ic) + ex * fc(e)
          if (derivs) then
            d = ex * (dfc(e) - 2.0_dp * g2(1, kk) * xr * fc(e))
            dge(b + 1 + kk, :, e) = dge(b + 1 + kk, :, e) + d * u
          end if
        end do
        do kk = 1, n3
          cs = cos(g3(kk) * r)
          feat(b + 1 + n2 + kk, ic) = feat(b + 1 + n2 + kk, ic) + cs * fc(e)
          if (derivs) then
            sn = sin(g3(kk) * r)
            d = cs * dfc(e) - g3(kk) * sn * fc(e)
            dge(b + 1 + n2 + kk, :, e) = dge(b + 1 + n2 + kk, :, e) + d * u
          end if
        end do
        do kk = 1, n4
          e4(kk, e) = exp(-g4(1, kk) * r * r)
        end do
        do kk = 1, n5
          e5(kk, e) = exp(-g5(1, kk) * r * r)
        end do
      end do

      ! ---- angular terms G4, G5 over unique pairs j < k -------------------
      if (nang > 0) then
        do j = 1, nn - 1
          gj = s0 + j
          rj = vec(:, gj)
          dj = dist(gj)
          sj = nbr_species(gj)
          do k = j + 1, nn
            gk = s0 + k
            rk = vec(:, gk)
            dk = dist(gk)
            sk = nbr_species(gk)
            ! pair (a, b) with a <= b is number b(b-1)/2 + a, as in DScribe
            a = min(sj, sk)
            p = (max(sj, sk) * (max(sj, sk) - 1)) / 2 + a
            b = nspecies * nrad + (p - 1) * nang
            c = dot_product(rj, rk) / (dj * dk)
            c = max(-1.0_dp, min(1.0_dp, c))

            if (n4 > 0) then
              rjk = rk - rj
              djk = norm2(rjk)
              call cutoff_value(ckind, djk, rc, cpar, ctab, fcjk, dfcjk)
              if (fcjk /= 0.0_dp .or. dfcjk /= 0.0_dp) then
                ff = fc(j) * fc(k) * fcjk
                dfj = dfc(j) * fc(k) * fcjk / dj
                dfk = fc(j) * dfc(k) * fcjk / dk
                dfjk = fc(j) * fc(k) * dfcjk / djk
                do kk = 1, n4
                  eta = g4(1, kk); zeta = g4(2, kk); lam = g4(3, kk)
                  base1 = 1.0_dp + lam * c
                  if (izeta4(kk) > 0) then
                    a1 = base1**(izeta4(kk) - 1)
                  else
                    a1 = base1**(zeta - 1.0_dp)
                  end if
                  av = a1 * base1
                  ee = e4(kk, j) * e4(kk, k) * exp(-eta * djk * djk)
                  pp = pref4(kk) * ee
                  val = pp * av * ff
                  feat(b + kk, ic) = feat(b + kk, ic) + val
                  if (derivs) then
                    ap = zeta * lam * a1
                    af = av * ff
                    cjk = pp * (ap * ff / (dj * dk) + 2.0_dp * eta * af - av * dfjk)
                    cjj = pp * (-ap * ff * c / (dj * dj) - 4.0_dp * eta * af + av * (dfj + dfjk))
                    ckk = pp * (-ap * ff * c / (dk * dk) - 4.0_dp * eta * af + av * (dfk + dfjk))
                    dge(b + kk, :, j) = dge(b + kk, :, j) + cjj * rj + cjk * rk
                    dge(b + kk, :, k) = dge(b + kk, :, k) + cjk * rj + ckk * rk
                  end if
                end do
              end if
            end if

            if (n5 > 0) then
              ff = fc(j) * fc(k)
              dfj = dfc(j) * fc(k) / dj
              dfk = fc(j) * dfc(k) / dk
              do kk = 1, n5
                eta = g5(1, kk); zeta = g5(2, kk); lam = g5(3, kk)
                base1 = 1.0_dp + lam * c
                if (izeta5(kk) > 0) then
                  a1 = base1**(izeta5(kk) - 1)
                else
                  a1 = base1**(zeta - 1.0_dp)
                end if
                av = a1 * base1
                pp = pref5(kk) * e5(kk, j) * e5(kk, k)
                val = pp * av * ff
                feat(b + n4 + kk, ic) = feat(b + n4 + kk, ic) + val
                if (derivs) then
                  ap = zeta * lam * a1
                  af = av * ff
                  cjk = pp * ap * ff / (dj * dk)
                  cjj = pp * (-ap * ff * c / (dj * dj) - 2.0_dp * eta * af + av * dfj)
                  ckk = pp * (-ap * ff * c / (dk * dk) - 2.0_dp * eta * af + av * dfk)
                  dge(b + n4 + kk, :, j) = dge(b + n4 + kk, :, j) + cjj * rj + cjk * rk
                  dge(b + n4 + kk, :, k) = dge(b + n4 + kk, :, k) + cjk * rj + ckk * rk
                end if
              end do
            end if
          end do
        end do
      end if

      ! ---- scatter per-entry derivatives to (centre, atom) slots and strain
      if (want_grad) then
        do slot = slot_start(ic) + 1, slot_start(ic + 1)
          grad(:, :, slot) = 0.0_dp
        end do
        do e = 1, nn
          slot = nbr_slot(s0 + e)
          grad(:, :, slot) = grad(:, :, slot) + dge(:, :, e)
          grad(:, :, centre_slot(ic)) = grad(:, :, centre_slot(ic)) - dge(:, :, e)
        end do
      end if
      if (want_strain) then
        ! d G / d eps_xy = sum_e (dG/dr_e)_x (r_e)_y, stored as strain(:, y, x, ic)
        strain(:, :, :, ic) = 0.0_dp
        do e = 1, nn
          do x = 1, 3
            do y = 1, 3
              strain(:, y, x, ic) = strain(:, y, x, ic) + dge(:, x, e) * vec(y, s0 + e)
            end do
          end do
        end do
      end if
    end subroutine one_centre

  end subroutine acsf_centres

  !> zeta as an integer when it is one (1 <= zeta <= 64), else 0.
  pure integer function integer_or_zero(zeta)
    real(dp), intent(in) :: zeta
    integer_or_zero = 0
    if (zeta >= 1.0_dp .and. zeta <= 64.0_dp) then
      if (abs(zeta - anint(zeta)) == 0.0_dp) integer_or_zero = nint(zeta)
    end if
  end function integer_or_zero

end module acsf_kernel
