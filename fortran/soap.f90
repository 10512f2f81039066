! The SOAP family (SCIENCE.md 1, 2.4): expansion of the neighbour density of
! each centre in radial functions times real spherical harmonics, and the
! rotation invariants built from it (power spectrum, bispectrum), with
! analytic derivatives with respect to positions and homogeneous strain.
!
! Input is the CSR neighbour list of the ACSF kernel (acsf.f90): entries
! nbr_start(i)+1 .. nbr_start(i+1) belong to centre i, with the vector
! r_ij = r_j - r_i (periodic images are entries of their own), the species
! (1-based) and the gradient slot. Centres own disjoint slots, so results do
! not depend on the number of threads.
!
! feat, grad and strain arrive uninitialised (np.empty) and every element is
! written: all features of each centre, each gradient slot zeroed by the centre
! that owns it just before it adds to it, all strain components of each centre.
! With zeroed they arrive zeroed instead and only the features whose channels
! (one for the expansion, two for the power spectrum, three for the
! bispectrum) are present around a centre are written: with many species and
! few of them around each centre, most of the output is never touched (and,
! in fresh zero pages, never made resident). Every page of a block gets a
! write (of zero) before the block is added to, so each fresh page is first
! written, never first read. Recycled memory may still hold non-zeros in the
! pages listed by dirty: each centre clears those of its strain rows, or writes
! them whole, when it writes the rows (output_memory.untouched_zero_rows).
!
! Radial part: the Python side tabulates every radial function
!     R_nl(r) = w(r) f_c(r) I_nl(r)      (weighting, cutoff, radial integral)
! as a cubic Hermite spline of values and derivatives on [0, rmax]
! (rtab(f, 1, k) = R, rtab(f, 2, k) = dR/dr, f = n + nmax * l) at the nodes of
! rgrid, uniform between the radii where R is only C1 (splines.f90), so any
! basis, cutoff or weighting runs through the same code.
!
! Angular part: real orthonormal spherical harmonics Y_lm (no Condon-Shortley
! phase), index lm = l*l + l + m + 1, from the polynomial form
!     Y_lm = sqrt(2) N_lm Q_l^m(z) Re/Im (x + i y)^|m|
! with Q_l^m the m-th derivative of the Legendre polynomial P_l, computed by
! the standard stable three-term recursions; their gradients follow from
! d Q_l^m / dz = Q_l^(m+1) and d (x + i y)^m = m (x + i y)^(m-1) (dx + i dy).
!
! Coefficients of a centre: c(lm, n, a), a the channel (species, or a single
! channel with species compression). Invariants are described by a feature
! map built in Python (plugins/soap.py), one column per feature:
!   power spectrum  fmap(1:5, f) = (a1, n1, a2, n2, l),
!                   p_f = ffac(f) sum_m c(lm, n1, a1) c(lm, n2, a2)
!   bispectrum      fmap(1:10, f) = (a1, n1, l1, a2, n2, l2, a3, n3, l3, t),
!                   b_f = ffac(f) sum_k T_t(k) c(m1_k, n1, a1) c(m2_k, n2, a2) c(m3_k, n3, a3)
!   where T_t is a sparse real coupling tensor (ct_start, ct_m, ct_val).
module soap_kernel
  use, intrinsic :: iso_c_binding, only: c_int, c_loc, c_f_pointer
  use, intrinsic :: iso_fortran_env, only: int64
  use atomdesc_cutoffs, only: dp
  use atomdesc_splines, only: spline_values, spline_values_scaled
  use atomdesc_pages, only: clear_if_written, stream_words, stream_fence
  implicit none
  private
  public :: soap_centres, soap_invariants_of, KIND_EXPANSION, KIND_POWER, KIND_BISPECTRUM
  ! Not for use outside: public only so that gfortran does not inline them where they are
  ! called once, into power_one_centre (there, features and gradients measured 4-9 % slower).
  public :: add_feature_derivs, add_feature_derivs_group

  integer, parameter :: KIND_EXPANSION = 0, KIND_POWER = 1, KIND_BISPECTRUM = 2
  real(dp), parameter :: pi = 3.14159265358979323846264338327950288_dp
  integer, parameter :: YLM_LANES = 16  ! neighbours per call of ylm_block

contains

  !> Normalisation sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!), times sqrt(2) for m > 0.
  subroutine ylm_norms(lmax, nrm)
    integer, intent(in) :: lmax
    real(dp), intent(out) :: nrm(0:lmax, 0:lmax)
    integer :: l, m, k
    real(dp) :: ratio
    nrm = 0.0_dp
    do l = 0, lmax
      do m = 0, l
        ratio = 1.0_dp
        do k = l - m + 1, l + m
          ratio = ratio / real(k, dp)
        end do
        nrm(l, m) = sqrt(real(2 * l + 1, dp) / (4.0_dp * pi) * ratio)
        if (m > 0) nrm(l, m) = nrm(l, m) * sqrt(2.0_dp)
      end do
    end do
  end subroutine ylm_norms

  !> Coefficients of the Q_l^m recursion, (2l-1)/(l-m) and (l+m-1)/(l-m), so that
  !> it needs no division.
  subroutine ylm_recursion(lmax, rec)
    integer, intent(in) :: lmax
    real(dp), intent(out) :: rec(2, 0:lmax, 0:lmax)
    integer :: l, m
    rec = 0.0_dp
    do m = 0, lmax
      do l = m + 2, lmax
        rec(1, l, m) = real(2 * l - 1, dp) / real(l - m, dp)
        rec(2, l, m) = real(l + m - 1, dp) / real(l - m, dp)
      end do
    end do
  end subroutine ylm_recursion

  !> Real Y_lm of the unit vectors u(:, 1:m), m <= YLM_LANES, with the neighbours
  !> innermost so that the recursions vectorise. y(:, i) = Y_lm(u_i) and, if grad,
  !> g(:, x, i) = d Y_lm(r / |r|) / d r_x at r = r(i) u_i. q, cm, sm, yb and dyb
  !> are work space of the caller.
  pure subroutine ylm_block(lmax, nlm, nrm, rec, m, u, r, grad, y, g, q, cm, sm, yb, dyb)
    integer, intent(in) :: lmax, nlm, m
    real(dp), intent(in) :: nrm(0:lmax, 0:lmax), rec(2, 0:lmax, 0:lmax), u(3, m), r(m)
    logical, intent(in) :: grad
    real(dp), intent(inout) :: y(nlm, m), g(:, :, :)
    real(dp), intent(inout) :: q(YLM_LANES, 0:lmax + 1, 0:lmax + 1)
    real(dp), intent(inout) :: cm(YLM_LANES, 0:lmax), sm(YLM_LANES, 0:lmax)
    real(dp), intent(inout) :: yb(YLM_LANES, nlm), dyb(YLM_LANES, 3, nlm)
    real(dp) :: ux(YLM_LANES), uy(YLM_LANES), z(YLM_LANES), a(YLM_LANES), ug(YLM_LANES)
    real(dp) :: dfact
    integer :: i, l, mm, i0, x

    ! every lane is computed (fixed trip counts vectorise best); unused lanes get a
    ! valid unit vector and are not copied out
    ux = 0.0_dp; uy = 0.0_dp; z = 1.0_dp
    do i = 1, m
      ux(i) = u(1, i); uy(i) = u(2, i); z(i) = u(3, i)
    end do
    cm(:, 0) = 1.0_dp
    sm(:, 0) = 0.0_dp
    do mm = 1, lmax
      do i = 1, YLM_LANES
        cm(i, mm) = ux(i) * cm(i, mm - 1) - uy(i) * sm(i, mm - 1)
        sm(i, mm) = ux(i) * sm(i, mm - 1) + uy(i) * cm(i, mm - 1)
      end do
    end do
    do l = 0, lmax
      q(:, l, l + 1) = 0.0_dp
    end do
    dfact = 1.0_dp
    do mm = 0, lmax
      if (mm > 0) dfact = dfact * real(2 * mm - 1, dp)
      q(:, mm, mm) = dfact
      if (mm + 1 <= lmax) q(:, mm + 1, mm) = real(2 * mm + 1, dp) * z(:) * dfact
      do l = mm + 2, lmax
        do i = 1, YLM_LANES
          q(i, l, mm) = rec(1, l, mm) * z(i) * q(i, l - 1, mm) - rec(2, l, mm) * q(i, l - 2, mm)
        end do
      end do
    end do
    do l = 0, lmax
      i0 = l * l + l + 1
      yb(:, i0) = nrm(l, 0) * q(:, l, 0)
      do mm = 1, l
        a(:) = nrm(l, mm) * q(:, l, mm)
        yb(:, i0 + mm) = a(:) * cm(:, mm)
        yb(:, i0 - mm) = a(:) * sm(:, mm)
      end do
    end do
    do i = 1, m
      do l = 1, nlm
        y(l, i) = yb(i, l)
      end do
    end do
    if (.not. grad) return
    do l = 0, lmax
      i0 = l * l + l + 1
      dyb(:, 1, i0) = 0.0_dp
      dyb(:, 2, i0) = 0.0_dp
      dyb(:, 3, i0) = nrm(l, 0) * q(:, l, 1)
      do mm = 1, l
        a(:) = nrm(l, mm) * q(:, l, mm)
        dyb(:, 1, i0 + mm) = a(:) * real(mm, dp) * cm(:, mm - 1)
        dyb(:, 2, i0 + mm) = -a(:) * real(mm, dp) * sm(:, mm - 1)
        dyb(:, 3, i0 + mm) = nrm(l, mm) * q(:, l, mm + 1) * cm(:, mm)
        dyb(:, 1, i0 - mm) = a(:) * real(mm, dp) * sm(:, mm - 1)
        dyb(:, 2, i0 - mm) = a(:) * real(mm, dp) * cm(:, mm - 1)
        dyb(:, 3, i0 - mm) = nrm(l, mm) * q(:, l, mm + 1) * sm(:, mm)
      end do
    end do
    ! the gradient of Y_lm(r / |r|): (dY - (u . dY) u) / r
    do l = 1, nlm
      do i = 1, m
        ug(i) = ux(i) * dyb(i, 1, l) + uy(i) * dyb(i, 2, l) + z(i) * dyb(i, 3, l)
      end do
      do x = 1, 3
        do i = 1, m
          g(l, x, i) = (dyb(i, x, l) - ug(i) * u(x, i)) / r(i)
        end do
      end do
    end do
  end subroutine ylm_block

  !> ylm_block over the n unit vectors u(:, 1:n), YLM_LANES at a time; g is
  !> (nlm, 3, n) when grad (else not touched).
  pure subroutine ylm_many(lmax, nlm, nrm, rec, n, u, r, grad, y, g, q, cm, sm, yb, dyb)
    integer, intent(in) :: lmax, nlm, n
    real(dp), intent(in) :: nrm(0:lmax, 0:lmax), rec(2, 0:lmax, 0:lmax), u(3, n), r(n)
    logical, intent(in) :: grad
    real(dp), intent(inout) :: y(nlm, n), g(:, :, :)
    real(dp), intent(inout) :: q(:, 0:, 0:), cm(:, 0:), sm(:, 0:), yb(:, :), dyb(:, :, :)
    integer :: k, k1
    do k = 1, n, YLM_LANES
      k1 = min(n, k + YLM_LANES - 1)
      if (grad) then
        call ylm_block(lmax, nlm, nrm, rec, k1 - k + 1, u(:, k:k1), r(k:k1), .true., &
                       y(:, k:k1), g(:, :, k:k1), q, cm, sm, yb, dyb)
      else
        call ylm_block(lmax, nlm, nrm, rec, k1 - k + 1, u(:, k:k1), r(k:k1), .false., &
                       y(:, k:k1), g, q, cm, sm, yb, dyb)
      end if
    end do
  end subroutine ylm_many

  !> Invariant features of one set of coefficients c(nlm, nmax, nchan); with
  !> only, just the features listed there (the others of out are not written). The
  !> bispectrum's from the adjoints of their first slot (keyed_adjoints: adj(:, k) for
  !> the keys k = fkey(1, f) at least), F = sum over m1 of c1 adj1: a pass over the
  !> coupling terms per key, not per feature. The power spectrum's from c alone (adj
  !> and fkey unused).
  pure subroutine invariant_values(kind, c, fmap, ffac, adj, fkey, out, only)
    integer, intent(in) :: kind
    real(dp), intent(in) :: c(:, :, :), ffac(:), adj(:, :)
    integer(c_int), intent(in) :: fmap(:, :), fkey(:, :)
    real(dp), intent(inout) :: out(:)
    integer, intent(in), optional :: only(:)
    integer :: f, l, lo, hi, j, nj
    nj = size(out)
    if (present(only)) nj = size(only)
    do j = 1, nj
      f = j
      if (present(only)) f = only(j)
      if (kind == KIND_POWER) then
        l = fmap(5, f)
        lo = l * l + 1
        hi = lo + 2 * l
        out(f) = ffac(f) * dot_product(c(lo:hi, fmap(2, f), fmap(1, f)), &
                                       c(lo:hi, fmap(4, f), fmap(3, f)))
      else
        l = fmap(3, f)
        lo = l * l + 1
        hi = lo + 2 * l
        out(f) = ffac(f) * dot_product(c(lo:hi, fmap(2, f), fmap(1, f)), &
                                       adj(1:2 * l + 1, fkey(1, f)))
      end if
    end do
  end subroutine invariant_values

  !> Derivatives dF(f, x) of the invariants along three directions dc(:, :, x)
  !> of the coefficients of channel a only (the other channels fixed). The
  !> bispectrum's come from its adjoints adj (keyed_adjoints; fkey(s, f) is feature
  !> f's key for slot s), the power spectrum's from c (adj and fkey unused). For
  !> derivatives of any form (averaged coefficients); a neighbour's own derivatives
  !> have a form that needs less (keyed_derivs, add_feature_derivs).
  pure subroutine invariant_derivs(kind, c, adj, fkey, dc, a, fmap, ffac, dF)
    integer, intent(in) :: kind, a
    real(dp), intent(in) :: c(:, :, :), adj(:, :), dc(:, :, :), ffac(:)
    integer(c_int), intent(in) :: fmap(:, :), fkey(:, :)
    real(dp), intent(inout) :: dF(:, :)
    integer :: f, l, lo, hi, x, o1, o2, o3, a1, a2, a3, n1, n2, n3, m1, m2, m3
    real(dp) :: v, s(3)
    do f = 1, size(dF, 1)
      if (kind == KIND_POWER) then
        a1 = fmap(1, f)
        a2 = fmap(3, f)
        if (a1 /= a .and. a2 /= a) then
          dF(f, :) = 0.0_dp
          cycle
        end if
        l = fmap(5, f)
        lo = l * l + 1
        hi = lo + 2 * l
        n1 = fmap(2, f)
        n2 = fmap(4, f)
        do x = 1, 3
          v = 0.0_dp
          if (a1 == a) v = v + dot_product(dc(lo:hi, n1, x), c(lo:hi, n2, a2))
          if (a2 == a) v = v + dot_product(c(lo:hi, n1, a1), dc(lo:hi, n2, x))
          dF(f, x) = ffac(f) * v
        end do
      else
        a1 = fmap(1, f)
        a2 = fmap(4, f)
        a3 = fmap(7, f)
        if (a1 /= a .and. a2 /= a .and. a3 /= a) then
          dF(f, :) = 0.0_dp
          cycle
        end if
        n1 = fmap(2, f)
        n2 = fmap(5, f)
        n3 = fmap(8, f)
        o1 = fmap(3, f)**2
        o2 = fmap(6, f)**2
        o3 = fmap(9, f)**2
        m1 = 2 * fmap(3, f) + 1  ! the adjoints' lengths
        m2 = 2 * fmap(6, f) + 1
        m3 = 2 * fmap(9, f) + 1
        ! the three directions together: each adjoint entry read once
        s = 0.0_dp
        if (a1 == a) call add_adjoint_dot(m1, adj(1:m1, fkey(1, f)), dc(o1 + 1:o1 + m1, n1, :), s)
        if (a2 == a) call add_adjoint_dot(m2, adj(1:m2, fkey(2, f)), dc(o2 + 1:o2 + m2, n2, :), s)
        if (a3 == a) call add_adjoint_dot(m3, adj(1:m3, fkey(3, f)), dc(o3 + 1:o3 + m3, n3, :), s)
        dF(f, :) = ffac(f) * s
      end if
    end do
  end subroutine invariant_derivs

  !> s(x) += sum_m w(m) d(m, x), x = 1..3.
  pure subroutine add_adjoint_dot(m, w, d, s)
    integer, intent(in) :: m
    real(dp), intent(in) :: w(m), d(:, :)
    real(dp), intent(inout) :: s(3)
    integer :: k
    real(dp) :: s1, s2, s3
    s1 = s(1)
    s2 = s(2)
    s3 = s(3)
    do k = 1, m
      s1 = s1 + w(k) * d(k, 1)
      s2 = s2 + w(k) * d(k, 2)
      s3 = s3 + w(k) * d(k, 3)
    end do
    s = [s1, s2, s3]
  end subroutine add_adjoint_dot

  !> The bispectrum's adjoints by key (plugins/soap.py, Bispectrum._build_adjoint_keys):
  !> adj(m, k) = sum of T c_p c_q over the terms of key k's tensor with m in its slot s,
  !> c_p and c_q the coefficients of its other two orbitals (only for the keys with
  !> use(k), if given). A feature changes by the dot product of its key's adjoint with a
  !> change of slot s's coefficients (keyed_derivs, invariant_derivs). Formed once per
  !> centre, and once for all the features that share the key.
  pure subroutine keyed_adjoints(c, keys, ct_start, ct_m, ct_val, adj, use)
    real(dp), intent(in) :: c(:, :, :), ct_val(:)
    integer(c_int), intent(in) :: keys(:, :), ct_start(:), ct_m(:, :)
    real(dp), intent(inout) :: adj(:, :)
    logical, intent(in), optional :: use(:)
    integer, parameter :: others(2, 3) = reshape([2, 3, 1, 3, 1, 2], [2, 3])
    integer :: k, i, t, s, p, q, op, oq, np_, nq, ap, aq
    do k = 1, size(keys, 2)
      if (present(use)) then
        if (.not. use(k)) cycle
      end if
      s = keys(1, k)
      t = keys(2, k)
      p = others(1, s)
      q = others(2, s)
      ap = keys(4, k)
      np_ = keys(5, k)
      op = keys(6, k)**2
      aq = keys(7, k)
      nq = keys(8, k)
      oq = keys(9, k)**2
      adj(1:2 * keys(3, k) + 1, k) = 0.0_dp
      do i = ct_start(t) + 1, ct_start(t + 1)
        adj(ct_m(s, i), k) = adj(ct_m(s, i), k) &
                             + ct_val(i) * c(op + ct_m(p, i), np_, ap) * c(oq + ct_m(q, i), nq, aq)
      end do
    end do
  end subroutine keyed_adjoints

  !> Derivatives dF(f, x) of the bispectrum along the move of one neighbour of channel
  !> a, at unit vector u, with y(lm) and gy(lm, x) its harmonics and their gradient
  !> and wrf, wdrf its weighted radial functions and their derivatives (index
  !> nmax l + n): its coefficients change by dc(lm, n, x) = wdrf u_x y(lm) +
  !> wrf gy(lm, x), so a feature's slot with orbital (a, n, l) and adjoint adj changes
  !> by wdrf(n, l) u_x (adj . y_l) + wrf(n, l) (adj . gy_l,x): the four dot products
  !> are formed once per key (ks: those of channel a, or those of them in use), in sk,
  !> and shared by the features that differ in n or in the channel of that slot.
  !> slot_chan(:, f) and slot_rad(:, f) are feature f's channels and radial indices
  !> by slot, fkey(:, f) its keys; with only, just the features listed there (the
  !> other rows of dF are not written).
  pure subroutine keyed_derivs(nf, nk, nlm, nfun, a, u, y, gy, wrf, wdrf, keys, ks, adj, &
                               slot_chan, slot_rad, fkey, ffac, sk, dF, only)
    integer, intent(in) :: nf, nk, nlm, nfun, a
    real(dp), intent(in) :: u(3), y(nlm), gy(nlm, 3), wrf(nfun), wdrf(nfun), adj(:, :), ffac(nf)
    integer(c_int), intent(in) :: keys(9, nk), ks(:), fkey(3, nf)
    integer, intent(in) :: slot_chan(3, nf), slot_rad(3, nf)
    real(dp), intent(inout) :: sk(4, nk), dF(nf, 3)
    integer, intent(in), optional :: only(:)
    integer :: j, k, o, m, f, nj, slot, i
    real(dp) :: s0, s1, s2, s3, w, r, d1, d2, d3
    do j = 1, size(ks)
      k = ks(j)
      o = keys(3, k)**2
      s0 = 0.0_dp
      s1 = 0.0_dp
      s2 = 0.0_dp
      s3 = 0.0_dp
      do m = 1, 2 * keys(3, k) + 1
        w = adj(m, k)
        s0 = s0 + w * y(o + m)
        s1 = s1 + w * gy(o + m, 1)
        s2 = s2 + w * gy(o + m, 2)
        s3 = s3 + w * gy(o + m, 3)
      end do
      sk(1, k) = s0
      sk(2, k) = s1
      sk(3, k) = s2
      sk(4, k) = s3
    end do
    nj = nf
    if (present(only)) nj = size(only)
    do j = 1, nj
      f = j
      if (present(only)) f = only(j)
      d1 = 0.0_dp
      d2 = 0.0_dp
      d3 = 0.0_dp
      do slot = 1, 3
        if (slot_chan(slot, f) /= a) cycle
        k = fkey(slot, f)
        i = slot_rad(slot, f)
        r = wdrf(i) * sk(1, k)
        d1 = d1 + (r * u(1) + wrf(i) * sk(2, k))
        d2 = d2 + (r * u(2) + wrf(i) * sk(3, k))
        d3 = d3 + (r * u(3) + wrf(i) * sk(4, k))
      end do
      dF(f, 1) = ffac(f) * d1
      dF(f, 2) = ffac(f) * d2
      dF(f, 3) = ffac(f) * d3
    end do
  end subroutine keyed_derivs

  !> c(:, lm, a) += wr(:, l) y(lm): the density coefficients, n fastest.
  pure subroutine accumulate_c(nmax, lmax, nlm, wr, y, c)
    integer, intent(in) :: nmax, lmax, nlm
    real(dp), intent(in) :: wr(nmax, 0:lmax), y(nlm)
    real(dp), intent(inout) :: c(nmax, nlm)
    integer :: l, lm, n
    do l = 0, lmax
      do lm = l * l + 1, l * l + 2 * l + 1
        do n = 1, nmax
          c(n, lm) = c(n, lm) + wr(n, l) * y(lm)
        end do
      end do
    end do
  end subroutine accumulate_c

  !> accumulate_c for four neighbours at once (c is loaded and stored once).
  pure subroutine accumulate_c4(nmax, lmax, nlm, nfun, wr, y, c)
    integer, intent(in) :: nmax, lmax, nlm, nfun
    real(dp), intent(in) :: wr(nfun, 4), y(nlm, 4)
    real(dp), intent(inout) :: c(nmax, nlm)
    integer :: l, lm, n, o
    real(dp) :: y1, y2, y3, y4
    do l = 0, lmax
      o = nmax * l
      do lm = l * l + 1, l * l + 2 * l + 1
        y1 = y(lm, 1)
        y2 = y(lm, 2)
        y3 = y(lm, 3)
        y4 = y(lm, 4)
        do n = 1, nmax
          c(n, lm) = c(n, lm) + ((wr(o + n, 1) * y1 + wr(o + n, 2) * y2) &
                                 + (wr(o + n, 3) * y3 + wr(o + n, 4) * y4))
        end do
      end do
    end do
  end subroutine accumulate_c4

  !> ps(n1, n2, a1, a2, l) = sum_m c(n1, lm, a1) c(n2, lm, a2) for the pairs of channels
  !> a1 <= a2 present around the centre (the others are neither formed nor read).
  pure subroutine power_matrix(nmax, lmax, nlm, nchan, present, c, ps)
    integer, intent(in) :: nmax, lmax, nlm, nchan
    logical, intent(in) :: present(nchan)
    real(dp), intent(in) :: c(nmax, nlm, nchan)
    real(dp), intent(inout) :: ps(nmax, nmax, nchan, nchan, 0:lmax)
    integer :: l, a1, a2
    do l = 0, lmax
      do a2 = 1, nchan
        if (.not. present(a2)) cycle
        do a1 = 1, a2
          if (.not. present(a1)) cycle
          call gram_block(nmax, 2 * l + 1, c(:, l * l + 1:l * l + 2 * l + 1, a1), &
                          c(:, l * l + 1:l * l + 2 * l + 1, a2), ps(:, :, a1, a2, l))
        end do
      end do
    end do
  end subroutine power_matrix

  !> p(n1, n2) = sum_m x(n1, m) z(n2, m), one column of p at a time held in a
  !> short accumulator (a few registers) while m runs.
  pure subroutine gram_block(n, k, x, z, p)
    integer, intent(in) :: n, k
    real(dp), intent(in) :: x(n, k), z(n, k)
    real(dp), intent(out) :: p(n, n)
    real(dp) :: acc(n)
    integer :: i, j, m
    do j = 1, n
      acc = 0.0_dp
      do m = 1, k
        do i = 1, n
          acc(i) = acc(i) + x(i, m) * z(j, m)
        end do
      end do
      p(:, j) = acc
    end do
  end subroutine gram_block

  !> Per neighbour: yc(n, l, b) = sum_m y(lm) c(n, lm, b) and
  !> gc(n, l, b, x) = sum_m g(lm, x) c(n, lm, b), g the gradient of Y_lm(r / |r|).
  pure subroutine project_c(nmax, lmax, nlm, nchan, present, c, y, g, yc, gc)
    integer, intent(in) :: nmax, lmax, nlm, nchan
    logical, intent(in) :: present(nchan)
    real(dp), intent(in) :: c(nmax, nlm, nchan), y(nlm), g(nlm, 3)
    real(dp), intent(out) :: yc(nmax, 0:lmax, nchan), gc(nmax, 0:lmax, nchan, 3)
    integer :: l, lm, b, n, x
    real(dp) :: v
    do b = 1, nchan
      if (.not. present(b)) cycle
      yc(:, :, b) = 0.0_dp
      do l = 0, lmax
        do lm = l * l + 1, l * l + 2 * l + 1
          v = y(lm)
          do n = 1, nmax
            yc(n, l, b) = yc(n, l, b) + v * c(n, lm, b)
          end do
        end do
      end do
    end do
    do x = 1, 3
      do b = 1, nchan
        if (.not. present(b)) cycle
        gc(:, :, b, x) = 0.0_dp
        do l = 0, lmax
          do lm = l * l + 1, l * l + 2 * l + 1
            v = g(lm, x)
            do n = 1, nmax
              gc(n, l, b, x) = gc(n, l, b, x) + v * c(n, lm, b)
            end do
          end do
        end do
      end do
    end do
  end subroutine project_c

  !> d(n1, n2, b, l, x) = d/dr_x of sum_m c(n1, lm, a) c(n2, lm, b) through the
  !> neighbour's contribution to c(:, :, a) only: wdr(n1, l) u_x yc(n2, l, b)
  !> + wr(n1, l) gc(n2, l, b, x).
  pure subroutine pair_derivs(nmax, lmax, nchan, present, wr, wdr, u, yc, gc, d)
    integer, intent(in) :: nmax, lmax, nchan
    logical, intent(in) :: present(nchan)
    real(dp), intent(in) :: wr(nmax, 0:lmax), wdr(nmax, 0:lmax), u(3)
    real(dp), intent(in) :: yc(nmax, 0:lmax, nchan), gc(nmax, 0:lmax, nchan, 3)
    real(dp), intent(out) :: d(nmax, nmax, nchan, 0:lmax, 3)
    integer :: l, b, x, n1, n2
    real(dp) :: s1, s2
    do x = 1, 3
      do l = 0, lmax
        do b = 1, nchan
          if (.not. present(b)) cycle
          do n2 = 1, nmax
            s1 = u(x) * yc(n2, l, b)
            s2 = gc(n2, l, b, x)
            do n1 = 1, nmax
              d(n1, n2, b, l, x) = wdr(n1, l) * s1 + wr(n1, l) * s2
            end do
          end do
        end do
      end do
    end do
  end subroutine pair_derivs

  !> Write 0 to x(1), x(513), ... and x(n): every 4 KiB page that x(1:n) spans gets a
  !> write. For zeroed outputs (zero already), so that a fresh page is first written.
  pure subroutine touch_pages(n, x)
    integer, intent(in) :: n
    real(dp), intent(inout) :: x(n)
    integer :: i
    do i = 1, n, 512
      x(i) = 0.0_dp
    end do
    if (n > 0) x(n) = 0.0_dp
  end subroutine touch_pages

  !> row(offset + 1:offset + w) = 0 if any of its bits is set (pages.f90).
  subroutine clear_page_of_row(n, row, offset, w)
    integer, intent(in) :: n, w
    integer(int64), intent(in) :: offset
    real(dp), intent(inout), target :: row(n)
    integer(int64), pointer :: bits(:)
    call c_f_pointer(c_loc(row(offset + 1)), bits, [w])
    call clear_if_written(w, bits)
  end subroutine clear_page_of_row

  !> x(1:n) = 0 as one contiguous block (of a contiguous array section of any rank).
  pure subroutine zero_fill(n, x)
    integer, intent(in) :: n
    real(dp), intent(out) :: x(n)
    x = 0.0_dp
  end subroutine zero_fill

  !> y(1:n) = x(1:n), y(1:n) = y(1:n) -/+ x(1:n) and y(1:n) = y(1:n) + a x(1:n): for
  !> sections of the outputs, which are host-associated in the centre routines, where an
  !> array assignment runs one element at a time, reloading the descriptor after every
  !> store (and reshaping a section allocates a copy).
  pure subroutine copy_block(n, x, y)
    integer, intent(in) :: n
    real(dp), intent(in) :: x(n)
    real(dp), intent(out) :: y(n)
    y = x
  end subroutine copy_block

  pure subroutine subtract_block(n, x, y)
    integer, intent(in) :: n
    real(dp), intent(in) :: x(n)
    real(dp), intent(inout) :: y(n)
    y = y - x
  end subroutine subtract_block

  pure subroutine add_block(n, x, y)
    integer, intent(in) :: n
    real(dp), intent(in) :: x(n)
    real(dp), intent(inout) :: y(n)
    y = y + x
  end subroutine add_block

  pure subroutine add_scaled_block(n, a, x, y)
    integer, intent(in) :: n
    real(dp), intent(in) :: a, x(n)
    real(dp), intent(inout) :: y(n)
    y = y + x * a
  end subroutine add_scaled_block

  !> The strain rows of one centre, row = strain(:, :, :, ic) (nine components of nf), from
  !> its six sums st6 over the live runs [f0s(j), f1s(j)] (ascending): component (y, x), at offset
  !> nf ((y - 1) + 3 (x - 1)), holds sum (min(x, y), max(x, y)). The rest of the row is
  !> zero already, but for the recycled pages at the word offsets dirty (ascending, w
  !> words each, inside the row). A dirty page with live features in it is composed in
  !> buf, zeros and features, and written whole past the cache, neither read nor cleared
  !> first: a page to clear and write costs ~0.48 us, ~0.27 us so (in C, here). The other
  !> dirty pages are cleared where not zero.
  subroutine write_strain_rows(nf, nlr, f0s, f1s, st6, dirty, w, row, buf)
    integer, intent(in) :: nf, nlr, f0s(nlr), f1s(nlr), w
    real(dp), intent(in) :: st6(nf, 6)
    integer(int64), intent(in) :: dirty(:)
    real(dp), intent(inout) :: row(9 * int(nf, int64))
    real(dp), intent(inout) :: buf(w)
    integer, parameter :: sym(0:8) = [1, 2, 3, 2, 4, 5, 3, 5, 6]
    integer(int64) :: o, base, lo, hi, pos, next, first, align
    integer :: p, c, j
    logical :: live
    if (size(dirty) == 0) then  ! nothing recycled to mind: each run one copy
      do c = 0, 8
        base = int(c, int64) * nf
        do j = 1, nlr
          row(base + f0s(j):base + f1s(j)) = st6(f0s(j):f1s(j), sym(c))
        end do
      end do
      return
    end if
    do p = 1, size(dirty)
      o = dirty(p)
      live = .false.
      pos = o  ! buf(1:pos - o) is composed
      do c = int(o / nf), min(8, int((o + w - 1) / nf))  ! the components in the page
        base = int(c, int64) * nf
        do j = 1, nlr
          lo = max(base + f0s(j) - 1, o)
          hi = min(base + f1s(j), o + w)
          if (lo >= hi) cycle
          buf(pos - o + 1:lo - o) = 0.0_dp
          buf(lo - o + 1:hi - o) = st6(lo - base + 1:hi - base, sym(c))
          pos = hi
          live = .true.
        end do
      end do
      if (live) then
        buf(pos - o + 1:w) = 0.0_dp
        call stream_words(buf, row(o + 1:o + w), int(w, int64))
      else
        call clear_page_of_row(size(row), row, o, w)
      end if
    end do
    call stream_fence()  ! once for the centre's pages (before the rows are read elsewhere)
    ! the live runs outside the pages written whole (every listed page with live features)
    align = modulo(dirty(1), int(w, int64))  ! every page of the row starts so
    do c = 0, 8
      base = int(c, int64) * nf
      do j = 1, nlr
        pos = base + f0s(j) - 1
        do while (pos < base + f1s(j))
          first = pos - modulo(pos - align, int(w, int64))  ! the page that holds pos
          next = min(base + f1s(j), first + w)
          if (.not. listed(first)) row(pos + 1:next) = st6(pos - base + 1:next - base, sym(c))
          pos = next
        end do
      end do
    end do

  contains

    logical function listed(page)
      integer(int64), intent(in) :: page
      integer :: k, lo_k, hi_k
      listed = .false.
      lo_k = 1
      hi_k = size(dirty)
      do while (lo_k <= hi_k)  ! binary search
        k = (lo_k + hi_k) / 2
        if (dirty(k) == page) then
          listed = .true.
          return
        else if (dirty(k) < page) then
          lo_k = k + 1
        else
          hi_k = k - 1
        end if
      end do
    end function listed

  end subroutine write_strain_rows

  !> The derivatives of the power-spectrum features in the listed runs for a neighbour
  !> of channel a: v(f, x) = ffac(f) (d(i1(f), x) [a1 = a] + d(i2(f), x) [a2 = a]),
  !> added to the neighbour's gradient slot g and to dsum (the centre's share, -dsum, is
  !> written once). Run r is run_first(r) .. run_first(r + 1) - 1, features of one
  !> ordered channel pair (a1, a2) with channel a whose other channel is present. A
  !> channel star > 0 is the sum of all the others (compression mu1nu1): every neighbour
  !> is in it.
  pure subroutine add_feature_derivs(nf, nd, nruns, nr, a, runs, run_first, fa1, fa2, fi1, &
                                     fi2, ffac, d, star, g, dsum)
    integer, intent(in) :: nf, nd, nruns, nr, a, star
    integer, intent(in) :: runs(nr), run_first(nruns + 1), fa1(nf), fa2(nf), fi1(nf), fi2(nf)
    real(dp), intent(in) :: ffac(nf), d(nd, 3)
    real(dp), intent(inout) :: g(nf, 3), dsum(nf, 3)
    integer :: i, f, f0, f1, x
    real(dp) :: v
    logical :: first, second
    do x = 1, 3
      do i = 1, nr
        f0 = run_first(runs(i))
        f1 = run_first(runs(i) + 1) - 1
        first = fa1(f0) == a .or. fa1(f0) == star
        second = fa2(f0) == a .or. fa2(f0) == star
        if (first .and. second) then
          do f = f0, f1
            v = ffac(f) * (d(fi1(f), x) + d(fi2(f), x))
            g(f, x) = g(f, x) + v
            dsum(f, x) = dsum(f, x) + v
          end do
        else if (first) then
          do f = f0, f1
            v = ffac(f) * d(fi1(f), x)
            g(f, x) = g(f, x) + v
            dsum(f, x) = dsum(f, x) + v
          end do
        else
          do f = f0, f1
            v = ffac(f) * d(fi2(f), x)
            g(f, x) = g(f, x) + v
            dsum(f, x) = dsum(f, x) + v
          end do
        end if
      end do
    end do
  end subroutine add_feature_derivs

  !> add_feature_derivs with strain, for nb <= 4 neighbours of the same channel a at
  !> once: neighbour j at rv(:, j) from the centre, with d(:, :, j) and gradient slot
  !> slots(j) (all different). v(f, x) rv(y) goes to st6(f, k) for the six k = (x, y),
  !> y >= x, in the order (1,1), (1,2), (1,3), (2,2), (2,3), (3,3). The strain derivative
  !> d F / d eps_xy = sum_e (dF/dr_e)_x (r_e)_y of a rotation invariant F is symmetric in
  !> x, y once summed over all neighbours (the antisymmetric part is the derivative along
  !> an infinitesimal rotation), so six sums suffice and the other three are mirrored
  !> (each neighbour's term is not symmetric on its own). st6 and dsum are read and
  !> written once for the group: with few neighbours per centre their updates are most
  !> of what strain costs. The sums are formed in the order of the neighbours one by one,
  !> so the results do not depend on the grouping. Without grad_too, grad and dsum are
  !> not touched. v is formed run by run in vb, so that each update is a unit-stride loop.
  pure subroutine add_feature_derivs_group(nf, nd, nruns, nr, a, runs, run_first, fa1, fa2, &
                                           fi1, fi2, ffac, nb, d, star, grad_too, rv, slots, &
                                           vb, grad, dsum, st6)
    integer, intent(in) :: nf, nd, nruns, nr, a, star, nb
    integer, intent(in) :: runs(nr), run_first(nruns + 1), fa1(nf), fa2(nf), fi1(nf), fi2(nf)
    integer(c_int), intent(in) :: slots(nb)
    real(dp), intent(in) :: ffac(nf), d(nd, 3, nb), rv(3, nb)
    logical, intent(in) :: grad_too
    real(dp), intent(inout) :: vb(:, :), grad(:, :, :), dsum(nf, 3), st6(nf, 6)
    real(dp), parameter :: ones(4) = 1.0_dp
    integer :: i, j, f, f0, f1, m, x, y, k
    logical :: first, second
    do x = 1, 3
      do i = 1, nr
        f0 = run_first(runs(i))
        f1 = run_first(runs(i) + 1) - 1
        m = f1 - f0 + 1
        first = fa1(f0) == a .or. fa1(f0) == star
        second = fa2(f0) == a .or. fa2(f0) == star
        do j = 1, nb
          if (first .and. second) then
            do f = f0, f1
              vb(f - f0 + 1, j) = ffac(f) * (d(fi1(f), x, j) + d(fi2(f), x, j))
            end do
          else if (first) then
            do f = f0, f1
              vb(f - f0 + 1, j) = ffac(f) * d(fi1(f), x, j)
            end do
          else
            do f = f0, f1
              vb(f - f0 + 1, j) = ffac(f) * d(fi2(f), x, j)
            end do
          end if
        end do
        if (grad_too) then
          do j = 1, nb
            grad(f0:f1, x, slots(j)) = grad(f0:f1, x, slots(j)) + vb(1:m, j)
          end do
          call add_columns(m, nb, vb, ones, dsum(f0:f1, x))
        end if
        k = (x - 1) * (8 - x) / 2  ! the six (x, y), y >= x, numbered from 1
        do y = x, 3
          k = k + 1
          call add_columns(m, nb, vb, rv(y, :), st6(f0:f1, k))
        end do
      end do
    end do
  end subroutine add_feature_derivs_group

  !> s = (((s + w(1) v(:, 1)) + w(2) v(:, 2)) + ...) over nb <= 4 columns, in one pass.
  !> (add_rows: the same over rows of different arrays; add_feature_derivs_group through
  !> it, with vb's columns as rows, was ~6 % slower on small cells.)
  pure subroutine add_columns(m, nb, v, w, s)
    integer, intent(in) :: m, nb
    real(dp), intent(in) :: v(:, :), w(:)
    real(dp), intent(inout) :: s(m)
    select case (nb)
    case (1)
      s = s + w(1) * v(1:m, 1)
    case (2)
      s = (s + w(1) * v(1:m, 1)) + w(2) * v(1:m, 2)
    case (3)
      s = ((s + w(1) * v(1:m, 1)) + w(2) * v(1:m, 2)) + w(3) * v(1:m, 3)
    case default
      s = (((s + w(1) * v(1:m, 1)) + w(2) * v(1:m, 2)) + w(3) * v(1:m, 3)) + w(4) * v(1:m, 4)
    end select
  end subroutine add_columns

  !> add_columns for nb <= 4 rows that are not columns of one array (r2 .. r4 unused
  !> beyond nb): s = (((s + w(1) r1) + w(2) r2) + ...).
  pure subroutine add_rows(m, nb, w, r1, r2, r3, r4, s)
    integer, intent(in) :: m, nb
    real(dp), intent(in) :: w(:), r1(m), r2(m), r3(m), r4(m)
    real(dp), intent(inout) :: s(m)
    select case (nb)
    case (1)
      s = s + w(1) * r1
    case (2)
      s = (s + w(1) * r1) + w(2) * r2
    case (3)
      s = ((s + w(1) * r1) + w(2) * r2) + w(3) * r3
    case default
      s = (((s + w(1) * r1) + w(2) * r2) + w(3) * r3) + w(4) * r4
    end select
  end subroutine add_rows

  subroutine soap_centres(kind, nbr_start, vec, dist, nbr_species, nbr_slot, centre_slot, &
                          slot_start, centre_species, chan, sw, self_c, rtab, rgrid, rmax, &
                          lmax, nmax, nchan, star, fmap, ffac, ct_start, ct_m, ct_val, keys, &
                          feature_keys, channel_keys_start, channel_keys, want_grad, &
                          want_strain, zeroed, dirty, dirty_start, page_words, nthreads, feat, &
                          grad, strain)
    !$ use omp_lib, only: omp_get_max_threads
    integer, intent(in) :: kind, lmax, nmax, nchan, star, nthreads
    integer(c_int), intent(in) :: nbr_start(:), nbr_species(:), nbr_slot(:), centre_slot(:)
    integer(c_int), intent(in) :: slot_start(:), centre_species(:), chan(:)
    integer(c_int), intent(in) :: fmap(:, :), ct_start(:), ct_m(:, :)
    ! the bispectrum's adjoint keys (kernels.f90, soap)
    integer(c_int), intent(in) :: keys(:, :), feature_keys(:, :), channel_keys_start(:)
    integer(c_int), intent(in) :: channel_keys(:)
    real(dp), intent(in) :: vec(:, :), dist(:), sw(:), self_c(:), rtab(:, :, :), rgrid(:), rmax
    real(dp), intent(in) :: ffac(:), ct_val(:)
    logical, intent(in) :: want_grad, want_strain, zeroed
    integer(int64), intent(in) :: dirty(:), dirty_start(:)
    integer, intent(in) :: page_words
    real(dp), intent(inout), contiguous :: feat(:, :), grad(:, :, :), strain(:, :, :, :)

    integer :: nc, nlm, nfun, nf, maxn, nt, ic, f, nd, ntab
    real(dp), allocatable :: nrm(:, :), rec(:, :, :)
    integer, allocatable :: fa1(:), fa2(:), fi1(:), fi2(:), psi(:)
    integer, allocatable :: slot_chan(:, :), slot_rad(:, :), trip(:), trip_start(:), trip_items(:)
    integer, allocatable :: run_first(:), rpair(:), pr_start(:), pr(:)
    integer :: nruns, r
    ! the bispectrum's keys whose adjoints a centre needs: all, or for the features alone
    ! those of the first slot (the first keys, plugins/soap.py)
    integer :: nkeys_used

    nc = size(centre_slot)
    if (nc == 0) return
    nlm = (lmax + 1)**2
    nfun = nmax * (lmax + 1)
    nf = size(feat, 1)
    maxn = max(1, maxval(nbr_start(2:nc + 1) - nbr_start(1:nc)))
    allocate (nrm(0:lmax, 0:lmax), rec(2, 0:lmax, 0:lmax))
    call ylm_norms(lmax, nrm)
    call ylm_recursion(lmax, rec)

    nt = nthreads
    if (nt <= 0) then
      nt = 1
      !$ nt = omp_get_max_threads()
    end if

    if (kind == KIND_POWER) then
      ! where each feature reads the power matrix and the per-neighbour derivatives
      nd = nmax * nmax * nchan * (lmax + 1)
      ntab = size(rtab, 3)
      allocate (fa1(nf), fa2(nf), fi1(nf), fi2(nf), psi(nf))
      do f = 1, nf
        fa1(f) = fmap(1, f)
        fa2(f) = fmap(3, f)
        fi1(f) = dindex(fmap(2, f), fmap(4, f), fmap(3, f), fmap(5, f))
        fi2(f) = dindex(fmap(4, f), fmap(2, f), fmap(1, f), fmap(5, f))
        ! power_matrix forms the blocks a1 <= a2 only: ps(n1, n2, a1, a2) = ps(n2, n1, a2, a1)
        if (fa1(f) <= fa2(f)) then
          psi(f) = fmap(2, f) + nmax * (fmap(4, f) - 1 + nmax * (fmap(1, f) - 1 &
                   + nchan * (fmap(3, f) - 1 + nchan * fmap(5, f))))
        else
          psi(f) = fmap(4, f) + nmax * (fmap(2, f) - 1 + nmax * (fmap(3, f) - 1 &
                   + nchan * (fmap(1, f) - 1 + nchan * fmap(5, f))))
        end if
      end do
      ! runs of consecutive features with the same ordered channels (a1, a2), grouped by
      ! their unordered channel pair: each centre lists the runs of the pairs present
      ! around it, and every loop over features goes run by run
      allocate (run_first(nf + 1))
      nruns = 0
      do f = 1, nf
        if (f == 1) then
          nruns = 1
        else if (fa1(f) /= fa1(f - 1) .or. fa2(f) /= fa2(f - 1)) then
          nruns = nruns + 1
        else
          cycle
        end if
        run_first(nruns) = f
      end do
      run_first(nruns + 1) = nf + 1
      allocate (rpair(nruns), pr_start(nchan * nchan + 2), pr(nruns))
      do r = 1, nruns
        rpair(r) = pair_of(fa1(run_first(r)), fa2(run_first(r)))
      end do
      call group_by_key(rpair, pr_start, pr)
      !$omp parallel num_threads(nt) default(shared) private(ic)
      block
        real(dp), allocatable :: c(:, :, :), wr(:, :), wdr(:, :), y(:, :), g(:, :, :), u(:, :)
        real(dp), allocatable :: rk(:), wk(:), q(:, :, :), cm(:, :), sm(:, :), yb(:, :)
        real(dp), allocatable :: dyb(:, :, :), ps(:), yc(:), gc(:)
        real(dp), allocatable :: dsum(:, :), st6(:, :), vb(:, :), d(:, :), pagebuf(:)
        integer, allocatable :: sf0(:), sf1(:)
        integer, allocatable :: ent(:), kpos(:), live(:), cl(:), cl_start(:)
        logical, allocatable :: present(:)
        logical :: derivs
        derivs = want_grad .or. want_strain
        allocate (c(nmax, nlm, nchan), wr(nfun, maxn), wdr(nfun, maxn), y(nlm, maxn))
        allocate (u(3, maxn), rk(maxn), wk(maxn), q(YLM_LANES, 0:lmax + 1, 0:lmax + 1))
        allocate (cm(YLM_LANES, 0:lmax), sm(YLM_LANES, 0:lmax), yb(YLM_LANES, nlm))
        allocate (ps(nd * nchan), ent(maxn), kpos(nchan + 1), present(nchan))
        allocate (live(nruns), cl(merge(nchan + 2, 2, star > 0) * nruns), cl_start(nchan + 1))
        if (derivs) then
          allocate (g(nlm, 3, maxn), dyb(YLM_LANES, 3, nlm))
          ! with strain, four neighbours at a time (add_feature_derivs_group)
          allocate (yc(nfun * nchan), gc(3 * nfun * nchan), d(3 * nd, merge(4, 1, want_strain)))
          allocate (dsum(nf, 3), vb(maxval(run_first(2:nruns + 1) - run_first(1:nruns)), &
                                    merge(4, 1, want_strain)))
        else
          allocate (g(1, 1, 1), dyb(1, 1, 1))
        end if
        if (want_strain) then
          allocate (st6(nf, 6), sf0(nruns), sf1(nruns), pagebuf(max(page_words, 1)))
        else
          allocate (st6(1, 1), sf0(1), sf1(1), pagebuf(1))
        end if
        !$omp do schedule(dynamic, 4)
        do ic = 1, nc
          call power_one_centre(ic, derivs, c, wr, wdr, y, g, u, rk, wk, q, cm, sm, yb, dyb, &
                                ps, yc, gc, d, dsum, vb, ent, kpos, present, live, cl, cl_start, &
                                st6, sf0, sf1, pagebuf)
        end do
        !$omp end do
        ! Explicitly, as below: gfortran 12 may not free BLOCK-local
        ! allocatables inside a parallel region.
        deallocate (c, wr, wdr, y, g, u, rk, wk, q, cm, sm, yb, dyb, ps, ent, kpos, present)
        deallocate (live, cl, cl_start)
        if (derivs) deallocate (yc, gc, d, dsum, vb)
        deallocate (st6, sf0, sf1, pagebuf)
      end block
      !$omp end parallel
      return
    end if

    nkeys_used = size(keys, 2)
    if (.not. (want_grad .or. want_strain)) nkeys_used = count(keys(1, :) == 1)
    if (kind == KIND_BISPECTRUM .and. (want_grad .or. want_strain)) then
      ! each feature's channel and radial function (index nmax l + n) by slot
      allocate (slot_chan(3, nf), slot_rad(3, nf))
      do f = 1, nf
        do r = 1, 3
          slot_chan(r, f) = fmap(3 * r - 2, f)
          slot_rad(r, f) = nmax * fmap(3 * r, f) + fmap(3 * r - 1, f)
        end do
      end do
    else
      allocate (slot_chan(1, 1), slot_rad(1, 1))
    end if
    if (kind == KIND_BISPECTRUM .and. zeroed) then
      ! the features of each channel triple: a centre lists those of the channels around it
      allocate (trip(nf), trip_start(nchan**3 + 2), trip_items(nf))
      do f = 1, nf
        trip(f) = triple_of(fmap(1, f), fmap(4, f), fmap(7, f))
      end do
      call group_by_key(trip, trip_start, trip_items)
    else
      allocate (trip_start(1), trip_items(1))
    end if

    !$omp parallel num_threads(nt) default(shared) private(ic)
    block
      real(dp), allocatable :: c(:, :, :), dce(:, :, :, :), rf(:), drf(:), y(:, :), gy(:, :, :)
      real(dp), allocatable :: ue(:, :), re(:), wrf(:, :), wdrf(:, :), sk(:, :)
      real(dp), allocatable :: q(:, :, :), cm(:, :), sm(:, :), yb(:, :), dyb(:, :, :), dF(:, :)
      real(dp), allocatable :: adj(:, :)
      integer, allocatable :: echan(:), blive(:), used_keys(:), used_keys_start(:)
      logical, allocatable :: here(:), keyuse(:)
      logical :: derivs
      derivs = want_grad .or. want_strain
      allocate (c(nlm, nmax, nchan), rf(nfun), drf(nfun), y(nlm, maxn), ue(3, maxn), re(maxn))
      allocate (echan(maxn), here(nchan))
      if (zeroed .and. kind == KIND_BISPECTRUM) then
        allocate (blive(nf), keyuse(size(keys, 2)), used_keys(size(channel_keys)))
        allocate (used_keys_start(nchan + 1))
      else
        allocate (blive(1), keyuse(1), used_keys(1), used_keys_start(1))
      end if
      allocate (q(YLM_LANES, 0:lmax + 1, 0:lmax + 1), cm(YLM_LANES, 0:lmax), sm(YLM_LANES, 0:lmax))
      allocate (yb(YLM_LANES, nlm), dyb(YLM_LANES, 3, nlm))
      if (kind == KIND_BISPECTRUM) then
        ! its features and derivatives come from the adjoints: 2 l + 1 entries per key
        allocate (adj(2 * lmax + 1, size(keys, 2)))
      else
        allocate (adj(1, 1))
      end if
      if (derivs .and. kind == KIND_EXPANSION) then
        allocate (dce(nlm, nmax, 3, maxn), gy(nlm, 3, maxn), dF(1, 1))
        allocate (wrf(1, 1), wdrf(1, 1), sk(1, 1))
      else if (derivs) then
        ! the bispectrum: the neighbours' harmonics and radial functions, and per key
        ! four dot products
        allocate (dce(1, 1, 1, 1), gy(nlm, 3, maxn), dF(nf, 3), sk(4, size(keys, 2)))
        allocate (wrf(nfun, maxn), wdrf(nfun, maxn))
      else
        allocate (dce(1, 1, 1, 1), dF(1, 1), gy(1, 1, 1), wrf(1, 1), wdrf(1, 1), sk(1, 1))
      end if
      !$omp do schedule(dynamic, 4)
      do ic = 1, nc
        call one_centre(ic, derivs, c, dce, rf, drf, y, gy, ue, re, q, cm, sm, yb, dyb, echan, &
                        dF, adj, here, blive, wrf, wdrf, sk, keyuse, used_keys, used_keys_start)
      end do
      !$omp end do
      ! Explicitly, as in acsf.f90: gfortran 12 may not free BLOCK-local
      ! allocatables inside a parallel region.
      deallocate (c, dce, rf, drf, y, gy, ue, re, q, cm, sm, yb, dyb, echan, dF, adj, here, &
                  blive, wrf, wdrf, sk, keyuse, used_keys, used_keys_start)
    end block
    !$omp end parallel

  contains

    !> Clears the recycled pages of centre ic's strain rows that may hold non-zeros,
    !> listed by dirty and dirty_start (zeroed outputs), just before the centre adds to
    !> them (the expansion and the bispectrum; the power spectrum writes its rows at
    !> once, write_strain_rows): each page then goes through the cache once.
    subroutine clear_strain_pages(ic)
      integer, intent(in) :: ic
      integer(int64) :: p
      do p = dirty_start(ic) + 1, dirty_start(ic + 1)
        call clear_page_of_row(9 * nf, strain(:, :, :, ic), dirty(p), page_words)
      end do
    end subroutine clear_strain_pages

    !> 1-based flat index of (n1, n2, b, l) in d(nmax, nmax, nchan, 0:lmax).
    pure integer function dindex(n1, n2, b, l)
      integer(c_int), intent(in) :: n1, n2, b, l
      dindex = n1 + nmax * (n2 - 1 + nmax * (b - 1 + nchan * l))
    end function dindex

    !> Index of the channel triple (a1, a2, a3) in trip_start.
    pure integer function triple_of(a1, a2, a3)
      integer, intent(in) :: a1, a2, a3
      triple_of = a1 + nchan * (a2 - 1 + nchan * (a3 - 1))
    end function triple_of

    !> Index of the unordered channel pair {a1, a2} in pr_start.
    pure integer function pair_of(a1, a2)
      integer, intent(in) :: a1, a2
      pair_of = (min(a1, a2) - 1) * nchan + max(a1, a2)
    end function pair_of

    !> Items 1..size(key) grouped by their key(i), 1 .. size(start) - 2 (a channel
    !> pair or triple; one counting pass, one filling pass: there can be many): those
    !> of key p are items(start(p) + 1:start(p + 1)), in ascending order.
    pure subroutine group_by_key(key, start, items)
      integer, intent(in) :: key(:)
      integer, intent(out) :: start(:), items(:)
      integer :: i, p
      start = 0
      do i = 1, size(key)
        start(key(i) + 2) = start(key(i) + 2) + 1
      end do
      do p = 2, size(start)
        start(p) = start(p) + start(p - 1)
      end do
      do i = 1, size(key)
        start(key(i) + 1) = start(key(i) + 1) + 1
        items(start(key(i) + 1)) = i
      end do
    end subroutine group_by_key

    !> The runs of the features whose two channels are present around a centre: all
    !> of them in live(1:nlr) (nlive features), and those of each channel a (the only
    !> ones a neighbour of channel a changes) in cl(cl_start(a) + 1:cl_start(a + 1)).
    subroutine live_features(present, nlive, nlr, live, cl, cl_start)
      logical, intent(in) :: present(:)
      integer, intent(out) :: nlive, nlr
      integer, intent(inout) :: live(:), cl(:), cl_start(:)
      integer :: a, b, p, n, j
      nlr = 0
      cl_start(1) = 0
      do a = 1, nchan
        cl_start(a + 1) = cl_start(a)
        if (.not. present(a)) cycle
        do b = 1, nchan
          if (.not. present(b)) cycle
          p = pair_of(a, b)
          n = pr_start(p + 1) - pr_start(p)
          cl(cl_start(a + 1) + 1:cl_start(a + 1) + n) = pr(pr_start(p) + 1:pr_start(p + 1))
          cl_start(a + 1) = cl_start(a + 1) + n
          if (b >= a) then
            live(nlr + 1:nlr + n) = pr(pr_start(p) + 1:pr_start(p + 1))
            nlr = nlr + n
          end if
          ! the summed channel holds every neighbour: its pairs with the other
          ! present channels change with a neighbour of channel a too
          if (star > 0 .and. a /= star .and. b /= a .and. b /= star) then
            p = pair_of(b, star)
            n = pr_start(p + 1) - pr_start(p)
            cl(cl_start(a + 1) + 1:cl_start(a + 1) + n) = pr(pr_start(p) + 1:pr_start(p + 1))
            cl_start(a + 1) = cl_start(a + 1) + n
          end if
        end do
      end do
      nlive = 0
      do j = 1, nlr
        nlive = nlive + run_first(live(j) + 1) - run_first(live(j))
      end do
    end subroutine live_features

    !> The six strain sums st6 of a centre's live runs live(1:nlr) from its neighbours'
    !> gradient rows, the neighbours ent(1:nk) each with a slot of its own: st6(f, (x, y)) =
    !> sum_e (r_e)_y grad(f, x, slot_e) over the neighbours e that move run f's features
    !> (of either of its channels, all with the compressed channel star), in the order
    !> of ent, as add_feature_derivs_group forms them. Four rows at a time, each read from
    !> the cache for every sum it enters, instead of every neighbour's products being added
    !> to st6 as they are formed.
    subroutine strain_from_rows(nk, nlr, live, ent, st6)
      integer, intent(in) :: nk, nlr, live(:), ent(:)
      real(dp), intent(inout) :: st6(:, :)
      integer :: sel(nk), sl(4), j, k, n, g0, nb, a, a1, a2, f0, f1, m, x, y, kk
      real(dp) :: w(4)
      do j = 1, nlr
        f0 = run_first(live(j))
        f1 = run_first(live(j) + 1) - 1
        m = f1 - f0 + 1
        a1 = fa1(f0)
        a2 = fa2(f0)
        n = 0
        do k = 1, nk
          a = chan(nbr_species(ent(k)))
          if (a == a1 .or. a == a2 .or. a1 == star .or. a2 == star) then
            n = n + 1
            sel(n) = ent(k)
          end if
        end do
        st6(f0:f1, :) = 0.0_dp
        do x = 1, 3
          do g0 = 1, n, 4
            nb = min(4, n - g0 + 1)
            sl(1:nb) = nbr_slot(sel(g0:g0 + nb - 1))
            sl(nb + 1:4) = sl(1)
            kk = (x - 1) * (8 - x) / 2  ! the six (x, y), y >= x, numbered from 1
            do y = x, 3
              kk = kk + 1
              w(1:nb) = vec(y, sel(g0:g0 + nb - 1))
              call add_rows(m, nb, w, grad(f0:f1, x, sl(1)), grad(f0:f1, x, sl(2)), &
                            grad(f0:f1, x, sl(3)), grad(f0:f1, x, sl(4)), st6(f0:f1, kk))
            end do
          end do
        end do
      end do
    end subroutine strain_from_rows

    !> Power spectrum of centre ic and, if derivs, its gradients, contracted
    !> neighbour by neighbour: d p / d r_e = 2 sum_m c dc_e never needs the
    !> dense d c / d r_e, only the projections of c on Y_lm(r_e) and its gradient.
    subroutine power_one_centre(ic, derivs, c, wr, wdr, y, g, u, rk, wk, q, cm, sm, yb, dyb, ps, &
                                yc, gc, d, dsum, vb, ent, kpos, present, live, cl, cl_start, st6, &
                                sf0, sf1, pagebuf)
      integer, intent(in) :: ic
      logical, intent(in) :: derivs
      real(dp), intent(inout) :: c(:, :, :), wr(:, :), wdr(:, :), y(:, :), g(:, :, :), u(:, :)
      real(dp), intent(inout) :: rk(:), wk(:), q(:, 0:, 0:), cm(:, 0:), sm(:, 0:), yb(:, :)
      real(dp), intent(inout) :: dyb(:, :, :), ps(:), yc(:), gc(:)
      real(dp), intent(inout) :: d(:, :), dsum(:, :), vb(:, :)
      integer, intent(inout) :: ent(:), kpos(:), live(:), cl(:), cl_start(:)
      logical, intent(inout) :: present(:)
      real(dp), intent(inout) :: st6(:, :), pagebuf(:)
      integer, intent(inout) :: sf0(:), sf1(:)
      integer :: s0, nn, e, k, nk, nb, a, slot, cs, nl, nlive, nlr, j, f0, f1, xs
      real(dp) :: r
      logical :: sums_from_rows

      s0 = nbr_start(ic)
      nn = nbr_start(ic + 1) - s0
      c = 0.0_dp
      cs = centre_species(ic)
      c(:, 1, chan(cs)) = sw(cs) * self_c
      ! neighbours inside rmax, stored grouped by channel (kpos: where each group starts)
      kpos = 0
      do e = 1, nn
        if (dist(s0 + e) >= rmax) cycle
        a = chan(nbr_species(s0 + e))
        kpos(a + 1) = kpos(a + 1) + 1
      end do
      do a = 1, nchan
        kpos(a + 1) = kpos(a + 1) + kpos(a)
      end do
      nk = kpos(nchan + 1)
      do e = 1, nn
        r = dist(s0 + e)
        if (r >= rmax) cycle
        a = chan(nbr_species(s0 + e))
        kpos(a) = kpos(a) + 1
        k = kpos(a)
        ent(k) = s0 + e
        u(:, k) = vec(:, s0 + e) / r
        rk(k) = r
        wk(k) = sw(nbr_species(s0 + e))
      end do
      call spline_values_scaled(nk, rk, wk, rgrid, nfun, ntab, rtab, derivs, wr, wdr)
      call ylm_many(lmax, nlm, nrm, rec, nk, u, rk, derivs, y, g, q, cm, sm, yb, dyb)
      ! kpos(a) is now the end of group a; accumulate four neighbours at a time
      k = 1
      do a = 1, nchan
        do while (k + 3 <= kpos(a))
          call accumulate_c4(nmax, lmax, nlm, nfun, wr(:, k:k + 3), y(:, k:k + 3), c(:, :, a))
          k = k + 4
        end do
        do while (k <= kpos(a))
          call accumulate_c(nmax, lmax, nlm, wr(:, k), y(:, k), c(:, :, a))
          k = k + 1
        end do
      end do

      ! channels with a density around this centre (kpos(a) is the end of group a)
      present(1) = kpos(1) > 0
      do a = 2, nchan
        present(a) = kpos(a) > kpos(a - 1)
      end do
      present(chan(cs)) = .true.
      if (star > 0) then  ! the sum of the other channels (compression mu1nu1)
        c(:, :, star) = 0.0_dp
        do a = 1, nchan
          if (a /= star .and. present(a)) c(:, :, star) = c(:, :, star) + c(:, :, a)
        end do
        present(star) = .true.
      end if
      call power_matrix(nmax, lmax, nlm, nchan, present, c, ps)
      call live_features(present, nlive, nlr, live, cl, cl_start)
      if (nlive < nf .and. .not. zeroed) feat(:, ic) = 0.0_dp
      do j = 1, nlr
        do k = run_first(live(j)), run_first(live(j) + 1) - 1
          feat(k, ic) = ffac(k) * ps(psi(k))
        end do
      end do
      if (.not. derivs) return

      if (want_grad) then
        if (zeroed) then
          ! write (zeros) to every page of what will be added to: the first touch of
          ! a fresh page must be a write (a read maps the shared zero page, and the
          ! write after it replaces that with a TLB flush on every thread's CPU)
          do k = 1, nk
            e = ent(k)
            a = chan(nbr_species(e))
            do j = cl_start(a) + 1, cl_start(a + 1)
              f0 = run_first(cl(j))
              f1 = run_first(cl(j) + 1) - 1
              do xs = 1, 3
                call touch_pages(f1 - f0 + 1, grad(f0:f1, xs, nbr_slot(e)))
              end do
            end do
          end do
          do j = 1, nlr
            f0 = run_first(live(j))
            f1 = run_first(live(j) + 1) - 1
            do xs = 1, 3
              call touch_pages(f1 - f0 + 1, grad(f0:f1, xs, centre_slot(ic)))
            end do
          end do
        else if (slot_start(ic + 1) > slot_start(ic)) then  ! the centre's slots, one block
          call zero_fill(nf * 3 * (slot_start(ic + 1) - slot_start(ic)), &
                         grad(:, :, slot_start(ic) + 1:slot_start(ic + 1)))
        end if
        do j = 1, nlr
          dsum(run_first(live(j)):run_first(live(j) + 1) - 1, :) = 0.0_dp
        end do
      end if
      ! With position gradients and a slot of its own for every neighbour (not an image of
      ! another or of the centre), each neighbour's gradient row is its whole term, and
      ! the strain sums are formed from the rows once they are done (strain_from_rows);
      ! otherwise while the neighbours are added (add_feature_derivs_group).
      sums_from_rows = want_strain .and. want_grad .and. &
                       slot_start(ic + 1) - slot_start(ic) == nn + 1
      if (want_strain .and. .not. sums_from_rows) then
        do j = 1, nlr
          st6(run_first(live(j)):run_first(live(j) + 1) - 1, :) = 0.0_dp
        end do
      end if
      k = 1
      do while (k <= nk)
        e = ent(k)
        a = chan(nbr_species(e))
        nl = cl_start(a + 1) - cl_start(a)
        ! with strain, up to four neighbours of channel a at once (of different slots)
        nb = 1
        if (want_strain .and. .not. sums_from_rows) then
          do while (nb < 4 .and. k + nb <= nk)
            if (chan(nbr_species(ent(k + nb))) /= a) exit
            if (want_grad) then
              if (any(nbr_slot(ent(k:k + nb - 1)) == nbr_slot(ent(k + nb)))) exit
            end if
            nb = nb + 1
          end do
        end if
        do j = 1, nb
          call project_c(nmax, lmax, nlm, nchan, present, c, y(:, k + j - 1), g(:, :, k + j - 1), &
                         yc, gc)
          call pair_derivs(nmax, lmax, nchan, present, wr(:, k + j - 1), wdr(:, k + j - 1), &
                           u(:, k + j - 1), yc, gc, d(:, j))
        end do
        if (want_strain .and. .not. sums_from_rows) then
          call add_feature_derivs_group(nf, nd, nruns, nl, a, cl(cl_start(a) + 1:cl_start(a + 1)), &
                                        run_first, fa1, fa2, fi1, fi2, ffac, nb, d, star, &
                                        want_grad, vec(:, ent(k:k + nb - 1)), &
                                        nbr_slot(ent(k:k + nb - 1)), vb, grad, dsum, st6)
        else
          call add_feature_derivs(nf, nd, nruns, nl, a, cl(cl_start(a) + 1:cl_start(a + 1)), &
                                  run_first, fa1, fa2, fi1, fi2, ffac, d(:, 1), star, &
                                  grad(:, :, nbr_slot(e)), dsum)
        end if
        k = k + nb
      end do
      if (sums_from_rows) call strain_from_rows(nk, nlr, live, ent, st6)
      if (want_grad) then
        slot = centre_slot(ic)
        do j = 1, nlr
          f0 = run_first(live(j))
          f1 = run_first(live(j) + 1) - 1
          do xs = 1, 3
            call subtract_block(f1 - f0 + 1, dsum(f0:f1, xs), grad(f0:f1, xs, slot))
          end do
        end do
      end if
      if (want_strain) then  ! the six sums, and the three mirrored
        if (nlive < nf .and. .not. zeroed) strain(:, :, :, ic) = 0.0_dp
        do j = 1, nlr  ! the live runs in ascending order
          f0 = run_first(live(j))
          f1 = run_first(live(j) + 1) - 1
          k = j
          do while (k > 1)
            if (sf0(k - 1) < f0) exit
            sf0(k) = sf0(k - 1)
            sf1(k) = sf1(k - 1)
            k = k - 1
          end do
          sf0(k) = f0
          sf1(k) = f1
        end do
        call write_strain_rows(nf, nlr, sf0, sf1, st6, &
                               dirty(dirty_start(ic) + 1:dirty_start(ic + 1)), page_words, &
                               strain(:, :, :, ic), pagebuf)
      end if
    end subroutine power_one_centre

    subroutine one_centre(ic, derivs, c, dce, rf, drf, y, gy, ue, re, q, cm, sm, yb, dyb, echan, &
                          dF, adj, here, blive, wrf, wdrf, sk, keyuse, used_keys, used_keys_start)
      integer, intent(in) :: ic
      logical, intent(in) :: derivs
      real(dp), intent(inout) :: c(:, :, :), dce(:, :, :, :), rf(:), drf(:), y(:, :), gy(:, :, :)
      real(dp), intent(inout) :: ue(:, :), re(:)
      real(dp), intent(inout) :: q(:, 0:, 0:), cm(:, 0:), sm(:, 0:), yb(:, :), dyb(:, :, :)
      real(dp), intent(inout) :: dF(:, :), adj(:, :)
      ! the bispectrum: the neighbours' weighted radial functions, the keys' dot products
      real(dp), intent(inout) :: wrf(:, :), wdrf(:, :), sk(:, :)
      integer, intent(inout) :: echan(:)
      ! zeroed bispectrum: the channels around the centre, its features of those, the
      ! adjoint keys whose other two channels are among them, and those of each channel
      ! a, used_keys(used_keys_start(a) + 1:used_keys_start(a + 1))
      logical, intent(inout) :: here(:), keyuse(:)
      integer, intent(inout) :: blive(:), used_keys(:), used_keys_start(:)
      integer :: s0, nn, e, a, l, m, lm, n, x, yy, slot, cs, off, nb, f, j, nlive, f0, f1, a2, a3
      real(dp) :: r, u(3), w, g(3), rv(3)

      s0 = nbr_start(ic)
      nn = nbr_start(ic + 1) - s0
      c = 0.0_dp
      ! the centre's own density: l = 0 only, constant
      cs = centre_species(ic)
      c(1, :, chan(cs)) = sw(cs) * self_c
      do e = 1, nn
        re(e) = dist(s0 + e)
        ue(:, e) = vec(:, s0 + e) / re(e)
      end do
      call ylm_many(lmax, nlm, nrm, rec, nn, ue, re, derivs, y, gy, q, cm, sm, yb, dyb)

      do e = 1, nn
        r = dist(s0 + e)
        a = chan(nbr_species(s0 + e))
        echan(e) = a
        if (r >= rmax) then
          echan(e) = 0
          cycle
        end if
        w = sw(nbr_species(s0 + e))
        u = ue(:, e)
        call spline_values(r, rgrid, rtab, rf, drf)
        do l = 0, lmax
          off = nmax * l
          do m = -l, l
            lm = l * l + l + m + 1
            do n = 1, nmax
              c(lm, n, a) = c(lm, n, a) + w * rf(off + n) * y(lm, e)
            end do
          end do
        end do
        if (derivs .and. kind == KIND_BISPECTRUM) then
          wrf(:, e) = w * rf
          wdrf(:, e) = w * drf
        else if (derivs .and. kind == KIND_EXPANSION) then
          do l = 0, lmax
            off = nmax * l
            do m = -l, l
              lm = l * l + l + m + 1
              g = gy(lm, :, e)
              do x = 1, 3
                do n = 1, nmax
                  dce(lm, n, x, e) = w * (drf(off + n) * u(x) * y(lm, e) + rf(off + n) * g(x))
                end do
              end do
            end do
          end do
        end if
      end do

      nb = nlm * nmax   ! features of one channel of the expansion
      if (zeroed) then   ! the channels of the neighbours (within rmax)
        here = .false.
        do e = 1, nn
          if (echan(e) /= 0) here(echan(e)) = .true.
        end do
      end if
      if (kind == KIND_EXPANSION .and. zeroed) then
        ! only the channels around the centre (its own and its neighbours')
        do a = 1, nchan
          if (here(a) .or. a == chan(cs)) call copy_block(nb, c(:, :, a), &
                                                          feat(nb * (a - 1) + 1:nb * a, ic))
        end do
      else if (kind == KIND_EXPANSION) then
        call copy_block(nf, c, feat(:, ic))
      else if (zeroed) then
        ! the bispectrum: only the features whose three channels are around the centre
        here(chan(cs)) = .true.
        nlive = 0
        do a3 = 1, nchan
          if (.not. here(a3)) cycle
          do a2 = 1, nchan
            if (.not. here(a2)) cycle
            do a = 1, nchan
              if (.not. here(a)) cycle
              j = triple_of(a, a2, a3)
              n = trip_start(j + 1) - trip_start(j)
              blive(nlive + 1:nlive + n) = trip_items(trip_start(j) + 1:trip_start(j + 1))
              nlive = nlive + n
            end do
          end do
        end do
        ! the adjoints of the keys whose other two channels are around too
        do j = 1, nkeys_used
          keyuse(j) = here(keys(4, j)) .and. here(keys(7, j))
        end do
        call keyed_adjoints(c, keys(:, :nkeys_used), ct_start, ct_m, ct_val, adj, &
                            keyuse(:nkeys_used))
        call invariant_values(kind, c, fmap, ffac, adj, feature_keys, feat(:, ic), blive(:nlive))
      else
        call keyed_adjoints(c, keys(:, :nkeys_used), ct_start, ct_m, ct_val, adj)
        call invariant_values(kind, c, fmap, ffac, adj, feature_keys, feat(:, ic))
      end if
      if (.not. derivs) return
      if (kind == KIND_BISPECTRUM .and. zeroed) then
        used_keys_start(1) = 0
        do a = 1, nchan
          used_keys_start(a + 1) = used_keys_start(a)
          if (.not. here(a)) cycle
          do j = channel_keys_start(a) + 1, channel_keys_start(a + 1)
            if (.not. keyuse(channel_keys(j))) cycle
            used_keys_start(a + 1) = used_keys_start(a + 1) + 1
            used_keys(used_keys_start(a + 1)) = channel_keys(j)
          end do
        end do
      end if

      if (want_strain) call clear_strain_pages(ic)
      ! zeroed: write to every page of what the loop below adds to (zero already),
      ! nothing else, so that each fresh page is first written (see power_one_centre)
      if (kind == KIND_EXPANSION .and. zeroed) then
        ! the neighbours' channel blocks: in their slots, the centre's slot and the strain
        do a = 1, nchan
          f0 = nb * (a - 1) + 1
          f1 = nb * a
          do x = 1, 3
            if (want_grad) then
              do e = 1, nn
                if (echan(e) == a) call touch_pages(nb, grad(f0:f1, x, nbr_slot(s0 + e)))
              end do
              if (here(a)) call touch_pages(nb, grad(f0:f1, x, centre_slot(ic)))
            end if
            if (want_strain .and. here(a)) then
              do yy = 1, 3
                call touch_pages(nb, strain(f0:f1, yy, x, ic))
              end do
            end if
          end do
        end do
      else if (zeroed) then
        ! the bispectrum: the listed features, in the neighbours' slots and the centre's
        if (want_grad .and. any(echan(1:nn) /= 0)) then
          do e = 0, nn   ! 0: the centre's slot
            if (e == 0) then
              slot = centre_slot(ic)
            else if (echan(e) /= 0) then
              slot = nbr_slot(s0 + e)
            else
              cycle
            end if
            do x = 1, 3
              do j = 1, nlive
                grad(blive(j), x, slot) = 0.0_dp
              end do
            end do
          end do
        end if
        if (want_strain) then
          do x = 1, 3
            do yy = 1, 3
              do j = 1, nlive
                strain(blive(j), yy, x, ic) = 0.0_dp
              end do
            end do
          end do
        end if
      else
        if (want_grad) then
          do slot = slot_start(ic) + 1, slot_start(ic + 1)
            grad(:, :, slot) = 0.0_dp
          end do
        end if
        if (want_strain) strain(:, :, :, ic) = 0.0_dp
      end if

      do e = 1, nn
        a = echan(e)
        if (a == 0) cycle
        rv = vec(:, s0 + e)
        if (kind == KIND_EXPANSION) then
          ! d c(:, :, a) / d r_e: one channel block of the flattened features
          off = nb * (a - 1)
          do x = 1, 3
            if (want_grad) then
              call add_block(nb, dce(:, :, x, e), grad(off + 1:off + nb, x, nbr_slot(s0 + e)))
              call subtract_block(nb, dce(:, :, x, e), grad(off + 1:off + nb, x, centre_slot(ic)))
            end if
            if (want_strain) then
              do yy = 1, 3
                call add_scaled_block(nb, rv(yy), dce(:, :, x, e), &
                                      strain(off + 1:off + nb, yy, x, ic))
              end do
            end if
          end do
        else if (zeroed) then   ! the bispectrum, features of the list only
          call keyed_derivs(nf, size(keys, 2), nlm, nfun, a, ue(:, e), y(:, e), gy(:, :, e), &
                            wrf(:, e), wdrf(:, e), keys, &
                            used_keys(used_keys_start(a) + 1:used_keys_start(a + 1)), &
                            adj, slot_chan, slot_rad, feature_keys, ffac, sk, dF, blive(:nlive))
          do x = 1, 3
            do j = 1, nlive
              f = blive(j)
              if (want_grad) then
                grad(f, x, nbr_slot(s0 + e)) = grad(f, x, nbr_slot(s0 + e)) + dF(f, x)
                grad(f, x, centre_slot(ic)) = grad(f, x, centre_slot(ic)) - dF(f, x)
              end if
              if (want_strain) then
                do yy = x, 3
                  strain(f, yy, x, ic) = strain(f, yy, x, ic) + dF(f, x) * rv(yy)
                end do
              end if
            end do
          end do
        else
          call keyed_derivs(nf, size(keys, 2), nlm, nfun, a, ue(:, e), y(:, e), gy(:, :, e), &
                            wrf(:, e), wdrf(:, e), keys, &
                            channel_keys(channel_keys_start(a) + 1:channel_keys_start(a + 1)), &
                            adj, slot_chan, slot_rad, feature_keys, ffac, sk, dF)
          if (want_grad) then
            call add_block(3 * nf, dF, grad(:, :, nbr_slot(s0 + e)))
            call subtract_block(3 * nf, dF, grad(:, :, centre_slot(ic)))
          end if
          if (want_strain) then
            ! d F / d eps_xy = sum_e (dF/dr_e)_x (r_e)_y, stored as strain(:, y, x, ic):
            ! y >= x only, mirrored below (symmetric for invariants, see
            ! add_feature_derivs_group)
            do x = 1, 3
              do yy = x, 3
                call add_scaled_block(nf, rv(yy), dF(:, x), strain(:, yy, x, ic))
              end do
            end do
          end if
        end if
      end do
      if (want_strain .and. kind /= KIND_EXPANSION .and. zeroed) then
        do x = 1, 3
          do yy = x + 1, 3
            do j = 1, nlive
              strain(blive(j), x, yy, ic) = strain(blive(j), yy, x, ic)
            end do
          end do
        end do
      else if (want_strain .and. kind /= KIND_EXPANSION) then
        do x = 1, 3
          do yy = x + 1, 3
            call copy_block(nf, strain(:, yy, x, ic), strain(:, x, yy, ic))
          end do
        end do
      end if
    end subroutine one_centre

  end subroutine soap_centres

  !> Invariants of given coefficients c(nlm, nmax, nchan) (e.g. averaged over
  !> centres) with their derivatives: dc(:, :, :, x, s) = dc / dr_s,x of slot
  !> s, dcs(:, :, :, x, y) = dc / d eps_xy. Gives feat(nf), grad(nf, 3, ns),
  !> strain(nf, y, x, 1) = dF / d eps_xy, each written whole when asked for.
  subroutine soap_invariants_of(kind, c, dc, dcs, fmap, ffac, ct_start, ct_m, ct_val, &
                                keys, feature_keys, want_grad, want_strain, feat, grad, strain)
    integer, intent(in) :: kind
    real(dp), intent(in) :: c(:, :, :), dc(:, :, :, :, :), dcs(:, :, :, :, :)
    integer(c_int), intent(in) :: fmap(:, :), ct_start(:), ct_m(:, :)
    integer(c_int), intent(in) :: keys(:, :), feature_keys(:, :)
    real(dp), intent(in) :: ffac(:), ct_val(:)
    logical, intent(in) :: want_grad, want_strain
    real(dp), intent(inout) :: feat(:), grad(:, :, :), strain(:, :, :, :)
    real(dp), allocatable :: dF(:, :), d3(:, :, :), adj(:, :)
    integer :: s, a, y, nk
    if (kind == KIND_BISPECTRUM) then
      ! 2 l + 1 entries for each key, l at most the largest l3; without derivatives
      ! those of the first slot only (the first keys)
      allocate (adj(2 * maxval(fmap(9, :)) + 1, size(keys, 2)))
      nk = size(keys, 2)
      if (.not. (want_grad .or. want_strain)) nk = count(keys(1, :) == 1)
      call keyed_adjoints(c, keys(:, :nk), ct_start, ct_m, ct_val, adj)
    else
      allocate (adj(1, 1))
    end if
    call invariant_values(kind, c, fmap, ffac, adj, feature_keys, feat)
    allocate (dF(size(feat), 3), d3(size(c, 1), size(c, 2), 3))
    if (want_grad) then
      grad = 0.0_dp
      do s = 1, size(dc, 5)
        do a = 1, size(c, 3)
          d3 = dc(:, :, a, :, s)
          call invariant_derivs(kind, c, adj, feature_keys, d3, a, fmap, ffac, dF)
          grad(:, :, s) = grad(:, :, s) + dF
        end do
      end do
    end if
    if (want_strain) then
      strain = 0.0_dp
      do y = 1, 3
        do a = 1, size(c, 3)
          d3 = dcs(:, :, a, :, y)
          call invariant_derivs(kind, c, adj, feature_keys, d3, a, fmap, ffac, dF)
          strain(:, y, :, 1) = strain(:, y, :, 1) + dF
        end do
      end do
    end if
  end subroutine soap_invariants_of

end module soap_kernel
