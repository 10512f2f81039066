! Full neighbour lists in CSR form from a half list (each pair once).
!
! vesin's half list holds every pair (i, j, S) once; the kernels need both
! directions, grouped by centre. half_to_full writes the entries of the
! selected centres in one pass over the pairs plus a two-digit counting sort:
! rows in the order of the centres, within a row by neighbour index, then by
! cell shift (lexicographically). The order depends only on the set of pairs,
! never on the order vesin returned them in (which varies with its threads).
!
! Vectors are r_j - r_i + S.box evaluated as vesin does,
! (r_j - r_i) + ((S1 b1 + S2 b2) + S3 b3), and the reverse entry gets the
! exact negation, so the numbers are bit for bit those of a full list.
module neighbour_lists
  use, intrinsic :: iso_c_binding, only: c_double, c_int, c_int64_t
  implicit none
  private
  public :: expand_half_list

  integer, parameter :: dp = c_double, i8 = c_int64_t

contains

  !> See kernels.f90 (half_to_full) for the arguments.
  subroutine expand_half_list(pos, box, pairs, hs, row, atom_label, cut, start, atoms, vec, &
                              dist, shifts, label, nkept, dmin, amin, bmin, status)
    real(dp), contiguous, intent(in) :: pos(:, :)
    real(dp), intent(in) :: box(3, 3), cut
    integer(i8), contiguous, intent(in) :: pairs(:, :)
    integer(c_int), contiguous, intent(in) :: hs(:, :), row(:), atom_label(:)
    integer(i8), contiguous, intent(out) :: start(:), atoms(:), shifts(:, :)
    real(dp), contiguous, intent(out) :: vec(:, :), dist(:)
    integer(c_int), contiguous, intent(out) :: label(:)
    integer(i8), intent(out) :: nkept, amin, bmin
    real(dp), intent(out) :: dmin
    integer(c_int), intent(out) :: status

    integer(i8) :: n, nh, nc, ne, p, i, j, e, k, r, a, b, o, fwd
    integer(i8), allocatable :: by_atom(:), fill(:), order(:)
    real(dp), allocatable :: hv(:, :), hd(:)
    real(dp) :: v(3), d, s1, s2, s3, sgn

    n = size(pos, 2, kind=i8)
    nh = size(pairs, 2, kind=i8)
    nc = size(start, kind=i8) - 1
    ne = size(dist, kind=i8)
    nkept = 0
    dmin = huge(1.0_dp)
    amin = -1
    bmin = -1
    status = 0
    start = 0
    if (size(row, kind=i8) /= n .or. size(atom_label, kind=i8) /= n .or. &
        size(hs, 2, kind=i8) /= nh .or. size(atoms, kind=i8) /= ne .or. &
        size(vec, 2, kind=i8) /= ne .or. size(shifts, 2, kind=i8) /= ne .or. &
        size(label, kind=i8) /= ne .or. nc < 0) then
      status = 3
      return
    end if

    ! Pass 1: vectors, the cut, the closest pair, the size of every row and
    ! of every neighbour-atom bucket (the first digit of the sort).
    if (any(row < 0 .or. row > nc)) then
      status = 1
      return
    end if
    allocate (hv(3, nh), hd(nh), by_atom(0:n))
    by_atom = 0
    do p = 1, nh
      i = pairs(1, p) + 1
      j = pairs(2, p) + 1
      if (i < 1 .or. i > n .or. j < 1 .or. j > n) then
        status = 1
        return
      end if
      s1 = real(hs(1, p), dp)
      s2 = real(hs(2, p), dp)
      s3 = real(hs(3, p), dp)
      v(1) = (pos(1, j) - pos(1, i)) + ((s1 * box(1, 1) + s2 * box(1, 2)) + s3 * box(1, 3))
      v(2) = (pos(2, j) - pos(2, i)) + ((s1 * box(2, 1) + s2 * box(2, 2)) + s3 * box(2, 3))
      v(3) = (pos(3, j) - pos(3, i)) + ((s1 * box(3, 1) + s2 * box(3, 2)) + s3 * box(3, 3))
      d = sqrt(v(1) * v(1) + v(2) * v(2) + v(3) * v(3))
      hd(p) = d
      if (.not. (d < cut)) cycle          ! dropped (also NaN)
      hv(:, p) = v
      nkept = nkept + 1
      a = min(i, j) - 1
      b = max(i, j) - 1
      if (d < dmin .or. (d == dmin .and. (a < amin .or. (a == amin .and. b < bmin)))) then
        dmin = d
        amin = a
        bmin = b
      end if
      if (row(i) > 0) then
        start(row(i) + 1) = start(row(i) + 1) + 1
        by_atom(j) = by_atom(j) + 1
      end if
      if (row(j) > 0) then
        start(row(j) + 1) = start(row(j) + 1) + 1
        by_atom(i) = by_atom(i) + 1
      end if
    end do
    do k = 1, nc
      start(k + 1) = start(k + 1) + start(k)
    end do
    if (start(nc + 1) > ne) then
      status = 2
      return
    end if

    ! Counting sort by neighbour atom: entry 2p-1 is (i -> j), entry 2p is (j -> i).
    by_atom(0) = 0
    do k = 1, n
      by_atom(k) = by_atom(k) + by_atom(k - 1)   ! by_atom(k): end of bucket k
    end do
    allocate (order(start(nc + 1)))
    do k = n, 1, -1
      by_atom(k) = by_atom(k - 1)                ! by_atom(k): start of bucket k
    end do
    do p = 1, nh
      if (.not. (hd(p) < cut)) cycle
      i = pairs(1, p) + 1
      j = pairs(2, p) + 1
      if (row(i) > 0) then
        by_atom(j) = by_atom(j) + 1
        order(by_atom(j)) = 2 * p - 1
      end if
      if (row(j) > 0) then
        by_atom(i) = by_atom(i) + 1
        order(by_atom(i)) = 2 * p
      end if
    end do
    deallocate (by_atom)

    ! Stable counting sort by row, writing the entries in place.
    allocate (fill(nc))
    fill = start(1:nc)
    do k = 1, start(nc + 1)
      e = order(k)
      p = (e + 1) / 2
      fwd = iand(e, 1_i8)                 ! 1: i -> j as listed, 0: the reverse
      i = pairs(2 - fwd, p) + 1
      j = pairs(1 + fwd, p) + 1
      sgn = real(2 * fwd - 1, dp)         ! x * (-1) is exactly -x
      r = row(i)
      o = fill(r) + 1
      fill(r) = o
      vec(1, o) = sgn * hv(1, p)
      vec(2, o) = sgn * hv(2, p)
      vec(3, o) = sgn * hv(3, p)
      shifts(1, o) = (2 * fwd - 1) * hs(1, p)
      shifts(2, o) = (2 * fwd - 1) * hs(2, p)
      shifts(3, o) = (2 * fwd - 1) * hs(3, p)
      atoms(o) = j - 1
      dist(o) = hd(p)
      label(o) = atom_label(j)
    end do

    ! Images of the same neighbour (small cells) in shift order.
    do r = 1, nc
      k = start(r) + 1
      do while (k < start(r + 1))
        if (atoms(k + 1) == atoms(k)) then
          e = k + 1
          do while (e < start(r + 1))
            if (atoms(e + 1) /= atoms(k)) exit
            e = e + 1
          end do
          call sort_images(k, e)
          k = e + 1
        else
          k = k + 1
        end if
      end do
    end do

  contains

    !> Insertion sort of entries lo..hi (one centre, one neighbour) by shift.
    subroutine sort_images(lo, hi)
      integer(i8), intent(in) :: lo, hi
      integer(i8) :: x, y, sx(3)
      real(dp) :: vx(3)
      do x = lo + 1, hi
        sx = shifts(:, x)
        vx = vec(:, x)
        d = dist(x)
        y = x - 1
        do while (y >= lo)
          if (.not. shift_less(sx, shifts(:, y))) exit
          shifts(:, y + 1) = shifts(:, y)
          vec(:, y + 1) = vec(:, y)
          dist(y + 1) = dist(y)
          y = y - 1
        end do
        shifts(:, y + 1) = sx
        vec(:, y + 1) = vx
        dist(y + 1) = d
      end do
    end subroutine sort_images

  end subroutine expand_half_list

  pure logical function shift_less(a, b)
    integer(i8), intent(in) :: a(3), b(3)
    if (a(1) /= b(1)) then
      shift_less = a(1) < b(1)
    else if (a(2) /= b(2)) then
      shift_less = a(2) < b(2)
    else
      shift_less = a(3) < b(3)
    end if
  end function shift_less

end module neighbour_lists
